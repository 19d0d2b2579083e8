/**
 * The shape every payShield host command handler has: parse the body into a typed request, run it
 * against the HSM API, format the response fields that follow the error code.
 */
import type { HsmApi } from '../../api.js';
import type { FieldCursor } from '../fields.js';

/** What a command may know about where it runs. */
export interface CommandContext {
  /** Who asked, for the audit log (e.g. `payshield:127.0.0.1:51234` or the TLS client's subject). */
  actor: string;
  /**
   * Allows A4 to take clear key components (poskey variant, see docs/hsm-commands.md). Off by
   * default: a payShield never accepts clear components from the host port.
   */
  allowClearComponents: boolean;
}

export interface CommandHandler<Req = unknown, Res = unknown> {
  /** Two-character command code, e.g. 'A0'. */
  readonly code: string;
  /** What it does, for logs and docs. */
  readonly name: string;
  /** Reads every field (the dispatcher checks that nothing but a trailer is left). */
  parse(cursor: FieldCursor): Req;
  /** Calls the HSM; throws PoskeyErrors that map to payShield codes. */
  run(hsm: HsmApi, request: Req, ctx: CommandContext): Res;
  /** The response fields after the error code, as latin1 text. */
  format(result: Res): string;
}

/** Declares a handler with its request and result types inferred. */
export function defineCommand<Req, Res>(handler: CommandHandler<Req, Res>): CommandHandler<Req, Res> {
  return handler;
}
