/**
 * The host command registry and the dispatcher that turns one frame payload into one response
 * payload. Every failure becomes a payShield error code in the response; nothing thrown here
 * escapes to the connection, so one bad command never costs a client its connection.
 */
import { isPoskeyError } from '../../../errors.js';
import type { HsmApi } from '../../api.js';
import { toPayShieldError } from '../errors.js';
import { FieldCursor } from '../fields.js';
import { buildResponse, parseCommand } from '../framing.js';
import { BU } from './check-value.js';
import { M0, M2 } from './data.js';
import { B2, NC } from './diagnostics.js';
import { A0, HA, HC } from './generate.js';
import { M6, M8 } from './mac.js';
import { CA, CC, G0 } from './pin.js';
import { Y0 } from './sign-in.js';
import { A4, A6, A8 } from './transfer.js';
import type { CommandContext, CommandHandler } from './types.js';

export type { CommandContext, CommandHandler } from './types.js';

// biome-ignore lint/suspicious/noExplicitAny: handlers differ in request/result types; the registry only routes.
type AnyHandler = CommandHandler<any, any>;

const HANDLERS: readonly AnyHandler[] = [NC, B2, A0, A4, A6, A8, BU, HC, HA, CA, CC, G0, M6, M8, M0, M2, Y0];

/** Command code → handler. */
export const COMMANDS: ReadonlyMap<string, AnyHandler> = new Map(HANDLERS.map((h) => [h.code, h]));

/** Error code for a well-formed command this HSM does not implement ("command has been disabled"). */
export const UNKNOWN_COMMAND_ERROR = '68';

/**
 * Command code used to answer a frame whose command code cannot be read: its response code is ZZ
 * (the second character incremented), what pythales answers to anything it does not know.
 */
const UNREADABLE_COMMAND = 'ZY';

export const DEFAULT_CONTEXT: CommandContext = Object.freeze({
  actor: 'payshield',
  allowClearComponents: false,
});

export interface CommandOutcome {
  /** The command code received ('??' when unreadable). */
  command: string;
  /** The two-character error code answered. */
  errorCode: string;
  /** Response payload: header, response code, error code, fields (no length prefix). */
  response: Buffer;
  /** The failure behind a non-00 answer, for logging (its message never holds key or PIN material). */
  error?: unknown;
}

/** Which key of a translate command a failure is about, for the codes that tell them apart (10/11). */
function roleOf(err: unknown): 'source' | 'destination' {
  const field = isPoskeyError(err) ? (err.field ?? '') : '';
  return /destination|target|^to$|zpk/i.test(field) && !/^source/i.test(field) ? 'destination' : 'source';
}

/**
 * Runs one command body. Returns the error code and response fields; a trailer (after 0x19) is
 * echoed back with its delimiter.
 */
export function executeCommand(
  hsm: HsmApi,
  command: string,
  body: Uint8Array,
  ctx: CommandContext = DEFAULT_CONTEXT,
): { errorCode: string; fields: string; error?: unknown } {
  const handler = COMMANDS.get(command);
  if (handler === undefined) {
    return { errorCode: UNKNOWN_COMMAND_ERROR, fields: '' };
  }
  const cursor = new FieldCursor(body);
  let trailer: string | undefined;
  try {
    const request = handler.parse(cursor);
    trailer = cursor.finish();
    const fields = handler.format(handler.run(hsm, request, ctx));
    return { errorCode: '00', fields: trailer === undefined ? fields : `${fields}\x19${trailer}` };
  } catch (error) {
    const fields = trailer === undefined ? '' : `\x19${trailer}`;
    return { errorCode: toPayShieldError(error, roleOf(error)), fields, error };
  }
}

/**
 * One frame payload (after the 2-byte length) → one response payload. A payload too short for the
 * header and command, or with an unreadable command code, is answered with what header there is,
 * response code ZZ and the framing error code (15, or 51 for a short header).
 */
export function handleFrame(
  hsm: HsmApi,
  payload: Uint8Array,
  headerLength: number,
  ctx: CommandContext = DEFAULT_CONTEXT,
): CommandOutcome {
  let parsed: ReturnType<typeof parseCommand>;
  try {
    parsed = parseCommand(payload, headerLength);
  } catch (error) {
    const header = Buffer.from(payload.subarray(0, Math.min(headerLength, payload.length))).toString(
      'latin1',
    );
    const errorCode = toPayShieldError(error);
    return {
      command: '??',
      errorCode,
      response: buildResponse(header, UNREADABLE_COMMAND, errorCode),
      error,
    };
  }
  const { header, command, body } = parsed;
  const out = executeCommand(hsm, command, body, ctx);
  try {
    return {
      command,
      errorCode: out.errorCode,
      response: buildResponse(header, command, out.errorCode, out.fields),
      error: out.error,
    };
  } catch (error) {
    // The fields do not fit a frame: answer the error alone.
    const errorCode = toPayShieldError(error);
    return { command, errorCode, response: buildResponse(header, command, errorCode), error };
  }
}
