/**
 * The store-and-forward queue (table `saf_queue`, migration 4): reversals and advices the host
 * owes the card network, kept until the network acknowledges them. Plain statements through
 * Kysely (not the journal's group commit): entries are rare next to journal rows (timeouts,
 * reversals, advices during an outage), and each insert is durable when `enqueue` resolves,
 * which is all the host needs before it answers the terminal.
 *
 * The unique key (kind, journal_id) makes queuing idempotent: the terminal's 0400, a network
 * timeout and crash recovery may all ask to reverse one original, and only the first is queued.
 */
import type { Selectable } from 'kysely';
import { storeError } from './errors.js';
import { type RegistryDeps, toInt } from './registry.js';
import {
  type NewSafEntry,
  SAF_KINDS,
  type SafEntry,
  type SafKind,
  type SafQueueTable,
  type SafState,
  type SafStore,
} from './types.js';

export interface SafDeps extends RegistryDeps {
  nodeId: string;
  newId: () => string;
}

const MAX_ERROR = 200;

function fromRow(r: Selectable<SafQueueTable>): SafEntry {
  return {
    id: r.id,
    nodeId: r.node_id,
    kind: r.kind as SafKind,
    journalId: r.journal_id,
    mti: r.mti,
    networkStan: r.network_stan,
    rrn: r.rrn,
    message: JSON.parse(r.message) as Record<string, string>,
    state: r.state as SafState,
    attempts: r.attempts,
    nextAttemptAt: toInt(r.next_attempt_at),
    responseCode: r.response_code,
    lastError: r.last_error,
    createdAt: toInt(r.created_at),
    updatedAt: toInt(r.updated_at),
  };
}

/** What never goes to disk: PAN, expiry, track 2, PIN block, security control, MACs. */
const SECRET_FIELDS = new Set(['2', '14', '35', '36', '52', '53', '64', '128']);

function checkEntry(e: NewSafEntry): void {
  const bad = (field: string, reason: string) => storeError('POSKEY_ERR_STORE_VALUE', reason, field);
  if (!SAF_KINDS.includes(e.kind)) throw bad('kind', `must be one of ${SAF_KINDS.join(', ')}`);
  if (typeof e.journalId !== 'string' || e.journalId === '') throw bad('journalId', 'required');
  if (!/^\d{4}$/.test(e.mti)) throw bad('mti', 'four digits');
  if (!/^\d{6}$/.test(e.networkStan)) throw bad('networkStan', 'six digits');
  if (!/^\d{12}$/.test(e.rrn)) throw bad('rrn', 'twelve digits');
  for (const [k, v] of Object.entries(e.message)) {
    if (SECRET_FIELDS.has(k)) throw bad('message', `field ${k} must not be stored`);
    if (typeof v !== 'string') throw bad('message', `field ${k} must be a string`);
  }
}

export function safStore(deps: SafDeps): SafStore {
  const { db, mapError, assertOpen } = deps;
  const run = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    assertOpen();
    try {
      return await fn();
    } catch (e) {
      throw mapError(e, what);
    }
  };
  return {
    enqueue: async (entry) => {
      checkEntry(entry);
      const id = deps.newId();
      const now = entry.createdAt ?? deps.now();
      const done = await run('saf_queue', () =>
        db
          .insertInto('saf_queue')
          .values({
            id,
            node_id: deps.nodeId,
            kind: entry.kind,
            journal_id: entry.journalId,
            mti: entry.mti,
            network_stan: entry.networkStan,
            rrn: entry.rrn,
            message: JSON.stringify(entry.message),
            state: 'pending',
            attempts: 0,
            next_attempt_at: now,
            response_code: null,
            last_error: null,
            created_at: now,
            updated_at: now,
          })
          .onConflict((oc) => oc.columns(['kind', 'journal_id']).doNothing())
          .executeTakeFirst(),
      );
      return Number(done.numInsertedOrUpdatedRows ?? 0n) === 1 ? id : undefined;
    },
    due: (now, limit) =>
      run('saf_queue', async () =>
        (
          await db
            .selectFrom('saf_queue')
            .selectAll()
            .where('state', '=', 'pending')
            .where('next_attempt_at', '<=', now)
            .orderBy('next_attempt_at')
            .orderBy('id')
            .limit(limit)
            .execute()
        ).map(fromRow),
      ),
    retryLater: (id, nextAttemptAt, error) =>
      run('saf_queue', async () => {
        await db
          .updateTable('saf_queue')
          .set((eb) => ({
            attempts: eb('attempts', '+', 1),
            next_attempt_at: nextAttemptAt,
            last_error: error.slice(0, MAX_ERROR),
            updated_at: deps.now(),
          }))
          .where('id', '=', id)
          .where('state', '=', 'pending')
          .execute();
      }),
    acknowledge: (id, responseCode) =>
      run('saf_queue', async () => {
        await db
          .updateTable('saf_queue')
          .set((eb) => ({
            attempts: eb('attempts', '+', 1),
            state: 'done',
            response_code: responseCode,
            updated_at: deps.now(),
          }))
          .where('id', '=', id)
          .execute();
      }),
    get: (id) =>
      run('saf_queue', async () => {
        const r = await db.selectFrom('saf_queue').selectAll().where('id', '=', id).executeTakeFirst();
        return r === undefined ? undefined : fromRow(r);
      }),
    list: (filter = {}) =>
      run('saf_queue', async () => {
        let q = db.selectFrom('saf_queue').selectAll();
        if (filter.journalId !== undefined) q = q.where('journal_id', '=', filter.journalId);
        if (filter.state !== undefined) q = q.where('state', '=', filter.state);
        if (filter.kind !== undefined) q = q.where('kind', '=', filter.kind);
        return (await q.orderBy('id').execute()).map(fromRow);
      }),
    pending: () =>
      run('saf_queue', async () => {
        const r = await db
          .selectFrom('saf_queue')
          .select((eb) => eb.fn.countAll().as('n'))
          .where('state', '=', 'pending')
          .executeTakeFirst();
        return Number(r?.n ?? 0);
      }),
  };
}
