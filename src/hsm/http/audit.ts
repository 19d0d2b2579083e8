/**
 * The HTTP API's audit records. The HSM audits what it does to keys (`key.generate`,
 * `key.import`, `key.export`…, by KCV); the API adds one record per key-management call, action
 * `api.<OperationId>`, naming the key table's id, and `key.purge` when a key's deletion date
 * passes. Refused calls are recorded too (`result: 'error'`, `detail` = the error code), as long
 * as the caller was authenticated.
 *
 * A call's record is on disk before the answer goes out. If the audit log cannot be written the
 * API fails closed: that call answers 503 (`POSKEY_ERR_AUDIT_IO`, or `POSKEY_ERR_AUDIT_CLOSED`) and
 * every later key-management call is refused before it touches the table.
 *
 * Nothing from a request reaches a record unfiltered: identifiers and alias names have runs of 16
 * or more hex digits masked (the audit log refuses them as possible key material), text is cut to
 * the log's limits, and a KCV is kept only if it looks like one.
 */
import { type AuditEntry, type AuditLog, type AuditResult, assertAuditEntry } from '../audit.js';
import { HsmError } from '../errors.js';

/** What a route notes about the key (or alias) a call concerns. */
export interface ApiAuditFacts {
  keyId?: string;
  kcv?: string;
  detail?: string;
}

/** The action of an audited route's records. */
export function apiAction(operationId: string): string {
  return `api.${operationId}`;
}

/** The action recorded when a key's deletion date passes and the table purges it. */
export const PURGE_ACTION = 'key.purge';

const HEX_RUN = /[0-9A-Fa-f]{16,}/g;
const KCV_RE = /^[0-9A-Fa-f]{4,16}$/;
const KEY_ID_MAX = 128;
const DETAIL_MAX = 512;

/** Request text made fit for the audit log: hex runs masked, non-printable characters replaced, cut to `max`. */
export function auditText(text: string, max: number): string {
  const clean = text.replace(HEX_RUN, '[hex]').replace(/[^\x20-\x7E]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max - 1)}…`;
}

function entryOf(
  actor: string,
  action: string,
  result: AuditResult,
  facts: ApiAuditFacts,
  code?: string,
): AuditEntry {
  const entry: AuditEntry = { actor, action, result };
  if (facts.keyId !== undefined && facts.keyId !== '') entry.keyId = auditText(facts.keyId, KEY_ID_MAX);
  if (facts.kcv !== undefined && KCV_RE.test(facts.kcv)) entry.kcv = facts.kcv;
  const detail = [code, facts.detail].filter((d) => d !== undefined && d !== '').join(': ');
  if (detail !== '') entry.detail = auditText(detail, DETAIL_MAX);
  return entry;
}

/** Appends the API's records to the HSM audit log, or does nothing when the app has none. */
export class ApiAuditor {
  readonly #log: AuditLog | undefined;
  #failure: unknown;

  constructor(log?: AuditLog) {
    this.#log = log;
  }

  get enabled(): boolean {
    return this.#log !== undefined;
  }

  /**
   * Checked before a key-management call does anything: the actor must be loggable, and the log
   * must not have failed.
   * @throws POSKEY_ERR_AUDIT_ENTRY / POSKEY_ERR_AUDIT_SECRET for an actor name the log refuses,
   *   POSKEY_ERR_AUDIT_IO after an earlier failed write
   */
  assertReady(actor: string, action: string): void {
    if (this.#log === undefined) return;
    assertAuditEntry({ actor, action, result: 'ok' });
    if (this.#failure !== undefined) {
      throw new HsmError(
        'POSKEY_ERR_AUDIT_IO',
        'the audit log failed; key management is refused until it is fixed',
        { field: 'audit', cause: this.#failure },
      );
    }
  }

  /**
   * Records a successful call; resolves once the record is on disk.
   * @throws (rejects) the audit log's error; later calls are then refused by `assertReady`
   */
  async ok(actor: string, action: string, facts: ApiAuditFacts): Promise<void> {
    if (this.#log === undefined) return;
    try {
      await this.#log.append(entryOf(actor, action, 'ok', facts));
    } catch (e) {
      this.#failed(e);
      throw e;
    }
  }

  /** Records a refused call. Never throws: the caller answers with the original error. */
  async error(actor: string, action: string, facts: ApiAuditFacts, code: string): Promise<void> {
    if (this.#log === undefined) return;
    try {
      await this.#log.append(entryOf(actor, action, 'error', facts, code));
    } catch (e) {
      this.#failed(e);
    }
  }

  /** Records keys the table purged (the clock decided: actor `system`); written in the background. */
  purged(keys: readonly { id: string; kcv: string; keyType: string }[]): void {
    if (this.#log === undefined) return;
    for (const k of keys) {
      const facts = { keyId: k.id, kcv: k.kcv, detail: `${k.keyType}: deletion date passed` };
      this.#log.append(entryOf('system', PURGE_ACTION, 'ok', facts)).catch((e: unknown) => {
        this.#failed(e);
      });
    }
  }

  /**
   * Remembers a failed write. A refused entry (an actor name the log will not take) is that
   * caller's problem, not the log's: it does not close key management for everyone.
   */
  #failed(e: unknown): void {
    const code = (e as { code?: unknown })?.code;
    if (code === 'POSKEY_ERR_AUDIT_ENTRY' || code === 'POSKEY_ERR_AUDIT_SECRET') return;
    this.#failure ??= e;
  }
}
