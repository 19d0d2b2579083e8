/**
 * The registry operations of the POSP host: merchants, terminals and their TMKs, terminal state,
 * and a masked view of the journal. The admin API (`src/host/admin`), `poskey terminal add|list|block`
 * and `poskey start`'s demo seeding all go through here, so a terminal is registered the same way
 * whoever asks.
 *
 * A terminal's TMK comes from one of three sources, each ending as an LMK key block in the store:
 *  - `{ components: [hex…], kcvs? }`: the key ceremony a bank runs, custodians entering clear
 *    components (and the KCV each was issued with) into the HSM, which forms the TMK;
 *  - `{ tr31: block, kek }`: a TR-31 block under a KEK the HSM holds (an LMK block, or the name of
 *    a KEK the registry was configured with);
 *  - `{ generate: true, exportUnder }`: the HSM generates the TMK and also returns it as a legacy
 *    cryptogram under the given transport KEK, with its check value, for injection into the PIN
 *    pad (`PinPad.provisionFromTransportCryptogram`). The clear TMK never leaves the HSM.
 *
 * Every HSM call names the caller as the audit actor, so the HSM's audit log shows who registered
 * which TMK (by KCV). Changes the HSM never sees (terminal state) go to the optional `audit` sink,
 * in the same record shape (`AuditEntry`).
 */
import { PoskeyError } from '../errors.js';
import type { ExportFormat, HsmClient, KeyAlgorithm, LmkKeyBlock } from '../hsm/api.js';
import type { AuditEntry } from '../hsm/audit.js';
import type {
  JournalFilter,
  JournalRecord,
  Merchant,
  MerchantInput,
  Repository,
  StoredKey,
  Terminal,
  TerminalKeyAlgorithm,
  TerminalState,
} from '../store/types.js';

export type RegistryErrorCode =
  /** A request is malformed: no or several TMK sources, a component of the wrong length, a bad filter. */
  | 'POSKEY_ERR_REGISTRY_INPUT'
  /** The merchant or terminal named does not exist. */
  | 'POSKEY_ERR_REGISTRY_NOT_FOUND'
  /** A KEK was named that the registry does not know (and it is not an LMK key block). */
  | 'POSKEY_ERR_REGISTRY_KEK';

export class RegistryError extends PoskeyError {
  declare readonly code: RegistryErrorCode;
}

function registryError(
  code: RegistryErrorCode,
  reason: string,
  field?: string,
  cause?: unknown,
): RegistryError {
  return new RegistryError(code, reason, { field, cause });
}

/** Where a terminal's TMK comes from (the admin API's JSON shapes). */
export type TmkSource =
  | { components: string[]; kcvs?: string[] }
  | { tr31: string; kek: string }
  | { generate: true; exportUnder: string };

export interface NewTerminalInput {
  tid: string;
  mid: string;
  serial?: string | null;
  /** Default TDES. */
  keyAlgorithm?: TerminalKeyAlgorithm;
  /** Default 1. */
  batchNumber?: number;
  /** Without one the terminal is registered keyless; `replaceTmk` gives it one later. */
  tmk?: TmkSource;
}

/** What a TMK registration yields: the TMK's KCV and, for `generate`, the cryptogram to inject. */
export interface TmkResult {
  source: 'components' | 'tr31' | 'generate';
  /** Legacy check value (E_K(0)), upper-case hex, as the store keeps it. */
  kcv: string;
  /** `generate` only: the TMK under the transport KEK, for the PIN pad. */
  delivery?: { format: ExportFormat; cryptogram: string; kcv: string };
}

/** A terminal as the registry shows it: check values and times, never key blocks. */
export interface TerminalView {
  tid: string;
  mid: string;
  serial: string | null;
  keyAlgorithm: TerminalKeyAlgorithm;
  state: TerminalState;
  batchNumber: number;
  tmk: { kcv: string } | null;
  workingKeys: { tpk: string | null; tak: string | null; tdk: string | null; createdAt: string } | null;
  macFailures: number;
  lastSignInAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** A journal row as the registry shows it: the masked PAN only (no PAN hash, no node-internal ids). */
export type JournalView = Omit<JournalRecord, 'panHash' | 'createdAt' | 'updatedAt'> & {
  createdAt: string;
  updatedAt: string;
};

export interface RegistryOptions {
  store: Repository;
  hsm: HsmClient;
  /** KEKs callers may name instead of passing an LMK block (e.g. `factory` for the PIN pads' transport key). */
  keks?: Readonly<Record<string, LmkKeyBlock>>;
  /** Where state changes are recorded (e.g. an `AuditLog`'s append). Failures propagate. */
  audit?: (entry: AuditEntry) => unknown;
  /** Called after a terminal record changed here, so a host process in the same process drops its cached copy. */
  onTerminalChange?: (tid: string) => void;
}

const HEX = /^[0-9A-Fa-f]+$/;
const KEY_NAME = /^[A-Za-z0-9._-]{1,64}$/;

function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** The view of a terminal: no key blocks. */
export function terminalView(t: Terminal): TerminalView {
  const w = t.workingKeys;
  return {
    tid: t.tid,
    mid: t.mid,
    serial: t.serial,
    keyAlgorithm: t.keyAlgorithm,
    state: t.state,
    batchNumber: t.batchNumber,
    tmk: t.tmk === null ? null : { kcv: t.tmk.kcv },
    workingKeys:
      w === null || (w.tpk === null && w.tak === null && w.tdk === null)
        ? null
        : {
            tpk: w.tpk?.kcv ?? null,
            tak: w.tak?.kcv ?? null,
            tdk: w.tdk?.kcv ?? null,
            createdAt: new Date(w.createdAt).toISOString(),
          },
    macFailures: t.macFailures,
    lastSignInAt: iso(t.lastSignInAt),
    createdAt: new Date(t.createdAt).toISOString(),
    updatedAt: new Date(t.updatedAt).toISOString(),
  };
}

function journalView(r: JournalRecord): JournalView {
  const { panHash: _hash, ...rest } = r;
  return {
    ...rest,
    createdAt: new Date(r.createdAt).toISOString(),
    updatedAt: new Date(r.updatedAt).toISOString(),
  };
}

/** Which source a TMK request names; exactly one must be present. */
function sourceKind(source: unknown): TmkResult['source'] {
  if (typeof source !== 'object' || source === null || Array.isArray(source)) {
    throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be an object naming one TMK source', 'tmk');
  }
  const s = source as Record<string, unknown>;
  const kinds = (['components', 'tr31', 'generate'] as const).filter((k) => s[k] !== undefined);
  if (kinds.length !== 1) {
    throw registryError(
      'POSKEY_ERR_REGISTRY_INPUT',
      'give exactly one of components, tr31 (with kek) or generate (with exportUnder)',
      'tmk',
    );
  }
  return kinds[0]!;
}

/** The HSM algorithm of a TMK: SM4, or TDES double length (triple when the components say so). */
function tmkAlgorithm(keyAlgorithm: TerminalKeyAlgorithm, components?: readonly string[]): KeyAlgorithm {
  if (keyAlgorithm === 'SM4') return 'sm4';
  return components?.[0]?.length === 48 ? 'tdes3' : 'tdes2';
}

function checkComponents(source: { components: unknown; kcvs?: unknown }): {
  components: string[];
  kcvs?: string[];
} {
  const { components, kcvs } = source;
  if (!Array.isArray(components) || components.length === 0) {
    throw registryError(
      'POSKEY_ERR_REGISTRY_INPUT',
      'must be a non-empty array of hex components',
      'tmk.components',
    );
  }
  components.forEach((c, i) => {
    if (typeof c !== 'string' || !HEX.test(c)) {
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be hex', `tmk.components[${i}]`);
    }
  });
  if (kcvs === undefined) return { components: components.map((c: string) => c.toUpperCase()) };
  if (!Array.isArray(kcvs) || kcvs.length !== components.length) {
    throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must give one KCV per component', 'tmk.kcvs');
  }
  kcvs.forEach((k, i) => {
    if (typeof k !== 'string' || !HEX.test(k)) {
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be hex', `tmk.kcvs[${i}]`);
    }
  });
  return {
    components: components.map((c: string) => c.toUpperCase()),
    kcvs: kcvs.map((k: string) => k.toUpperCase()),
  };
}

/** Renames an HSM error's field into the request's terms (`source.components[1]` → `tmk.components[1]`). */
function inTmkTerms(e: unknown): unknown {
  if (!(e instanceof PoskeyError)) return e;
  const field = e.field === undefined ? 'tmk' : `tmk.${e.field.replace(/^source\./, '')}`;
  return new PoskeyError(e.code, e.reason, { field, cause: e });
}

export class Registry {
  readonly #store: Repository;
  readonly #hsm: HsmClient;
  readonly #keks: Map<string, LmkKeyBlock>;
  readonly #audit: RegistryOptions['audit'];
  readonly #changed: (tid: string) => void;

  constructor(options: RegistryOptions) {
    this.#store = options.store;
    this.#hsm = options.hsm;
    this.#keks = new Map(Object.entries(options.keks ?? {}));
    this.#audit = options.audit;
    this.#changed = options.onTerminalChange ?? (() => undefined);
  }

  /** Names of the KEKs callers may refer to. */
  get kekNames(): string[] {
    return [...this.#keks.keys()];
  }

  /** Makes a KEK nameable (`exportUnder: name`, `kek: name`). */
  addKek(name: string, block: LmkKeyBlock): void {
    if (!KEY_NAME.test(name))
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be 1-64 of A-Z a-z 0-9 . _ -', 'name');
    this.#keks.set(name, block);
  }

  // --- merchants ---------------------------------------------------------------------------------

  /** Creates the merchant, or replaces its name and MCC. @throws POSKEY_ERR_STORE_VALUE */
  async addMerchant(input: MerchantInput, actor = 'admin'): Promise<Merchant> {
    const m = await this.#store.merchants.upsert(input);
    await this.#record({
      actor,
      action: 'merchant.upsert',
      keyId: `merchant:${m.mid}`,
      result: 'ok',
      detail: `MCC ${m.mcc}`,
    });
    return m;
  }

  /** @throws POSKEY_ERR_REGISTRY_NOT_FOUND */
  async getMerchant(mid: string): Promise<Merchant> {
    const m = await this.#store.merchants.get(mid);
    if (m === undefined)
      throw registryError('POSKEY_ERR_REGISTRY_NOT_FOUND', 'no merchant with this MID', 'mid');
    return m;
  }

  listMerchants(): Promise<Merchant[]> {
    return this.#store.merchants.list();
  }

  // --- terminals ---------------------------------------------------------------------------------

  /**
   * Registers a terminal, with its TMK when a source is given. The merchant must exist and the TID
   * (and serial) be free; both are checked before the HSM is asked for anything.
   * @throws POSKEY_ERR_REGISTRY_INPUT, POSKEY_ERR_REGISTRY_NOT_FOUND (mid), POSKEY_ERR_REGISTRY_KEK,
   *   POSKEY_ERR_STORE_DUPLICATE (tid, serial), POSKEY_ERR_STORE_VALUE, and the HSM's key errors
   *   with `field` under `tmk.` (a KCV that does not match: POSKEY_ERR_KCV…)
   */
  async addTerminal(
    input: NewTerminalInput,
    actor = 'admin',
  ): Promise<{ terminal: TerminalView; tmk?: TmkResult }> {
    if (typeof input !== 'object' || input === null)
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be an object', 'terminal');
    const keyAlgorithm = input.keyAlgorithm ?? 'TDES';
    if (keyAlgorithm !== 'TDES' && keyAlgorithm !== 'SM4') {
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', "must be 'TDES' or 'SM4'", 'keyAlgorithm');
    }
    if (input.tmk !== undefined) sourceKind(input.tmk);
    await this.getMerchant(input.mid);
    if ((await this.#store.terminals.get(input.tid)) !== undefined) {
      throw new PoskeyError('POSKEY_ERR_STORE_DUPLICATE', 'a terminal with this TID already exists', {
        field: 'tid',
      });
    }
    const made = input.tmk === undefined ? undefined : await this.#makeTmk(input.tmk, keyAlgorithm, actor);
    const created = await this.#store.terminals.create({
      tid: input.tid,
      mid: input.mid,
      keyAlgorithm,
      serial: input.serial ?? null,
      tmk: made?.stored ?? null,
      ...(input.batchNumber === undefined ? {} : { batchNumber: input.batchNumber }),
    });
    await this.#record({
      actor,
      action: 'terminal.add',
      keyId: `terminal:${created.tid}`,
      ...(made ? { kcv: made.result.kcv } : {}),
      result: 'ok',
      detail: `MID ${created.mid} ${keyAlgorithm}${made ? ` TMK from ${made.result.source}` : ' no TMK'}`,
    });
    return made === undefined
      ? { terminal: terminalView(created) }
      : { terminal: terminalView(created), tmk: made.result };
  }

  /**
   * Gives a terminal a new TMK and forgets its working keys (they were delivered under the old
   * TMK; the terminal must sign in again).
   * @throws as addTerminal; POSKEY_ERR_REGISTRY_NOT_FOUND (tid)
   */
  async replaceTmk(
    tid: string,
    source: TmkSource,
    actor = 'admin',
  ): Promise<{ terminal: TerminalView; tmk: TmkResult }> {
    sourceKind(source);
    const t = await this.#terminal(tid);
    const made = await this.#makeTmk(source, t.keyAlgorithm, actor);
    const updated = await this.#store.transaction(async (tx) => {
      await tx.terminals.setTmk(tid, made.stored);
      return tx.terminals.setWorkingKeys(tid, {});
    });
    this.#changed(tid);
    await this.#record({
      actor,
      action: 'terminal.tmk',
      keyId: `terminal:${tid}`,
      kcv: made.result.kcv,
      result: 'ok',
      detail: `TMK from ${made.result.source}`,
    });
    return { terminal: terminalView(updated), tmk: made.result };
  }

  /** @throws POSKEY_ERR_REGISTRY_NOT_FOUND */
  async getTerminal(tid: string): Promise<TerminalView> {
    return terminalView(await this.#terminal(tid));
  }

  async listTerminals(filter: { mid?: string; state?: TerminalState } = {}): Promise<TerminalView[]> {
    return (await this.#store.terminals.list(filter)).map(terminalView);
  }

  /**
   * Blocks a terminal (every request then gets 97) or unblocks it (back to `active` when it has
   * signed in before, else `new`; its MAC-failure counter starts again from 0). Idempotent.
   * @throws POSKEY_ERR_REGISTRY_NOT_FOUND, POSKEY_ERR_REGISTRY_INPUT (another state)
   */
  async setTerminalState(tid: string, state: 'blocked' | 'active', actor = 'admin'): Promise<TerminalView> {
    if (state !== 'blocked' && state !== 'active') {
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', "must be 'blocked' or 'active'", 'state');
    }
    const t = await this.#terminal(tid);
    let updated: Terminal;
    if (state === 'blocked') {
      updated = t.state === 'blocked' ? t : await this.#store.terminals.setState(tid, 'blocked');
    } else {
      const target: TerminalState = t.lastSignInAt === null ? 'new' : 'active';
      updated = await this.#store.transaction(async (tx) => {
        const reset = await tx.terminals.resetMacFailures(tid);
        return reset.state === target ? reset : tx.terminals.setState(tid, target);
      });
    }
    this.#changed(tid);
    await this.#record({
      actor,
      action: state === 'blocked' ? 'terminal.block' : 'terminal.unblock',
      keyId: `terminal:${tid}`,
      result: 'ok',
      detail: `state ${t.state} to ${updated.state}`,
    });
    return terminalView(updated);
  }

  blockTerminal(tid: string, actor?: string): Promise<TerminalView> {
    return this.setTerminalState(tid, 'blocked', actor);
  }

  unblockTerminal(tid: string, actor?: string): Promise<TerminalView> {
    return this.setTerminalState(tid, 'active', actor);
  }

  // --- journal -----------------------------------------------------------------------------------

  /** Journal rows, PANs masked, newest first unless `order: 'asc'`. */
  async journal(filter: JournalFilter = {}): Promise<JournalView[]> {
    return (await this.#store.journal.list({ order: 'desc', ...filter })).map(journalView);
  }

  // --- internals ---------------------------------------------------------------------------------

  async #terminal(tid: string): Promise<Terminal> {
    const t = await this.#store.terminals.get(tid);
    if (t === undefined)
      throw registryError('POSKEY_ERR_REGISTRY_NOT_FOUND', 'no terminal with this TID', 'tid');
    return t;
  }

  #kek(value: unknown, field: string): LmkKeyBlock {
    if (typeof value !== 'string' || value === '') {
      throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must name a KEK or hold its LMK key block', field);
    }
    const named = this.#keks.get(value);
    if (named !== undefined) return named;
    if (KEY_NAME.test(value) && value.length < 40) {
      throw registryError(
        'POSKEY_ERR_REGISTRY_KEK',
        `no KEK named ${value}; known: ${this.kekNames.join(', ') || 'none'}`,
        field,
      );
    }
    return value;
  }

  async #makeTmk(
    source: TmkSource,
    keyAlgorithm: TerminalKeyAlgorithm,
    actor: string,
  ): Promise<{ stored: StoredKey; result: TmkResult }> {
    const kind = sourceKind(source);
    const hsm = this.#hsm;
    try {
      if (kind === 'components') {
        const { components, kcvs } = checkComponents(source as { components: unknown; kcvs?: unknown });
        const algorithm = tmkAlgorithm(keyAlgorithm, components);
        const imported = await hsm.importKey(
          {
            keyType: 'TMK',
            algorithm,
            source: { kind: 'components', components, ...(kcvs ? { kcvs } : {}) },
          },
          actor,
        );
        return this.#result(imported.keyBlock, 'components');
      }
      if (kind === 'tr31') {
        const s = source as { tr31: unknown; kek: unknown };
        if (typeof s.tr31 !== 'string' || s.tr31 === '')
          throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be a TR-31 key block', 'tmk.tr31');
        const kek = this.#kek(s.kek, 'tmk.kek');
        const imported = await hsm.importKey(
          {
            keyType: 'TMK',
            algorithm: tmkAlgorithm(keyAlgorithm),
            source: { kind: 'tr31', kek, block: s.tr31 },
          },
          actor,
        );
        return this.#result(imported.keyBlock, 'tr31');
      }
      const g = source as { generate: unknown; exportUnder: unknown };
      if (g.generate !== true)
        throw registryError('POSKEY_ERR_REGISTRY_INPUT', 'must be true', 'tmk.generate');
      const kek = this.#kek(g.exportUnder, 'tmk.exportUnder');
      const made = await hsm.generateKey(
        { keyType: 'TMK', algorithm: tmkAlgorithm(keyAlgorithm), exportUnder: { kek, format: 'legacy' } },
        actor,
      );
      const out = await this.#result(made.keyBlock, 'generate');
      if (made.exported === undefined)
        throw registryError(
          'POSKEY_ERR_REGISTRY_KEK',
          'the HSM did not deliver the TMK under the KEK',
          'tmk.exportUnder',
        );
      out.result.delivery = {
        format: made.exported.format,
        cryptogram: made.exported.cryptogram,
        kcv: out.result.kcv,
      };
      return out;
    } catch (e) {
      throw e instanceof RegistryError ? e : inTmkTerms(e);
    }
  }

  /** The stored form of a new TMK: its LMK block and legacy KCV (3 bytes, as terminals show it). */
  async #result(
    block: LmkKeyBlock,
    source: TmkResult['source'],
  ): Promise<{ stored: StoredKey; result: TmkResult }> {
    const kcv = (await this.#hsm.checkValue(block, 'legacy', 3)).value.toUpperCase();
    return { stored: { block, kcv }, result: { source, kcv } };
  }

  async #record(entry: AuditEntry): Promise<void> {
    if (this.#audit !== undefined) await this.#audit(entry);
  }
}

/** Field names `Registry` methods may throw errors for, for callers mapping them (docs). */
export const REGISTRY_ERROR_CODES: readonly RegistryErrorCode[] = [
  'POSKEY_ERR_REGISTRY_INPUT',
  'POSKEY_ERR_REGISTRY_NOT_FOUND',
  'POSKEY_ERR_REGISTRY_KEK',
];
