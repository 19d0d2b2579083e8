/**
 * A software PIN pad: the terminal's secure device. It holds the terminal master key (TMK) and the
 * working keys in numbered slots and only ever lets them be *used*: no method, property, JSON or
 * inspect output returns a key (seed §3: "the TMK can only be written and used in computations,
 * never read back"; at least 30 double-length slots).
 *
 *  - Key loading device path: `injectTmk` (and `injectTransportKey`, the factory key) take a clear
 *    key. This is the one entry point a key loading device (母POS, a later TR-34 port) calls, and the
 *    only way back from a tamper.
 *  - Remote provisioning: `provisionFromTransportCryptogram` loads a TMK delivered encrypted under
 *    the factory transport key, so the TMK is never seen in clear outside an HSM and the pad.
 *  - Sign-in: `loadWorkingKey`/`loadWorkingKeySet` decrypt a cryptogram under the TMK inside the pad
 *    and load the key only when its check value matches; otherwise nothing changes.
 *  - Use: `encryptPin` (clear PIN in, PIN block out), `mac`/`verifyMac`, `encryptTrack`. Each slot
 *    has a role, and an operation refuses a key of another role (a MAC key cannot encrypt PINs).
 *  - `tamper()` zeroises every slot; until the next injection every operation fails with
 *    POSKEY_ERR_PINPAD_TAMPERED, "security attack" (seed §5).
 *
 * Persistence (`seal`/`unseal`) encrypts all slots under a storage key with AES-256-GCM inside this
 * module; `pinpad-store.ts` derives that key and writes the file.
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { fromHex, toHex, zeroize } from '../crypto/bytes.js';
import { createKey, type KeyHandle } from '../crypto/cipher.js';
import { checkValue, verifyCheckValue } from '../crypto/kcv.js';
import { generateMac, verifyMac as verifyMacBytes } from '../crypto/mac.js';
import { encryptPinBlock, type PinBlockFormat } from '../crypto/pinblock.js';
import { gcmOpen, gcmSeal } from '../crypto/sealed.js';
import { transformTrack } from '../protocol/unionpay-pos.js';
import { PinPadErrorCode as E, PinPadError } from './errors.js';

/** The seed's minimum: "the PIN pad must be able to store at least 30 double-length keys". */
export const MIN_SLOTS = 30;
export const DEFAULT_SLOT_COUNT = 32;
/** Largest key a slot holds: double-length TDES or SM4. */
export const MAX_SLOT_KEY_BYTES = 16;

/** Key algorithms a slot can hold: single DES (legacy 60.3 = 001 working keys), double-length TDES, SM4. */
export type PinPadAlgorithm = 'des' | 'tdes' | 'sm4';
/** Master keys (TMK, transport key) are double-length TDES or SM4. */
export type MasterKeyAlgorithm = 'tdes' | 'sm4';
export type WorkingKeyRole = 'pin' | 'mac' | 'data';
/** `tmk` and `transport` keys only decrypt other keys inside the pad; working keys do one job each. */
export type KeyRole = 'tmk' | 'transport' | WorkingKeyRole;
export type PinPadMacAlgorithm = 'unionpay-ecb' | 'x919';
export type PinPadState = 'normal' | 'tampered';

const KEY_BYTES: Readonly<Record<PinPadAlgorithm, number>> = { des: 8, tdes: 16, sm4: 16 };
const ALGORITHMS = Object.keys(KEY_BYTES) as PinPadAlgorithm[];
const WORKING_ROLES: readonly KeyRole[] = ['pin', 'mac', 'data'];
const ROLES: readonly KeyRole[] = ['tmk', 'transport', ...WORKING_ROLES];
const PIN_FORMATS: readonly PinBlockFormat[] = [0, 1, 3, 'sm4'];
/** Shortest check value accepted: 3 bytes is the usual injection KCV, field 62 carries 4. */
const MIN_KCV_BYTES = 3;
/** Check value shown in slot metadata (legacy, 3 bytes): a fingerprint, never the key. */
const INFO_KCV = { method: 'legacy', length: 3 } as const;

export const SEALED_PINPAD_FORMAT = 'poskey-pinpad/1';

/** What the device says about itself (the later key-loading issue reads and extends this). */
export interface DeviceInfo {
  serial: string;
  model: string;
  firmware: string;
  /** Installed applications in installation order (the seed's order matters for key injection). */
  apps: readonly string[];
}

/** Public metadata of one slot: never the key. */
export interface SlotInfo {
  slot: number;
  role: KeyRole;
  algorithm: PinPadAlgorithm;
  bits: number;
  /** Legacy check value, 3 bytes hex. */
  kcv: string;
  /** ISO time the key was loaded. */
  loadedAt: string;
  /** Slot of the key it was decrypted under (working keys, provisioned TMKs). */
  under?: number;
}

export interface PinPadOptions {
  serial?: string;
  model?: string;
  firmware?: string;
  apps?: readonly string[];
  /** Number of key slots, at least 30; default 32. */
  slots?: number;
  /** Clock source, for tests. */
  now?: () => Date;
}

export interface InjectOptions {
  algorithm: MasterKeyAlgorithm;
  /** Check value the key loading device shows (3 bytes or more, legacy method); verified when given. */
  kcv?: string;
}

export interface WorkingKeyLoad {
  /** Slot number of the TMK the cryptogram is under. */
  under: number;
  /** ECB cryptogram of the key under the TMK (hex or bytes). */
  cryptogram: string | Uint8Array;
  /** Legacy check value of the clear key (hex or bytes, 3 bytes or more; field 62 carries 4). */
  checkValue: string | Uint8Array;
  role: WorkingKeyRole;
  algorithm: PinPadAlgorithm;
}

export interface PinEntry {
  pin: string;
  pan?: string;
  /** ISO 9564 format; default 0 for DES/TDES keys, 'sm4' for SM4 keys. */
  format?: PinBlockFormat;
}

/** The sealed secure storage: slot metadata in clear, the keys only inside the AES-GCM ciphertext. */
export interface SealedPinPad {
  format: typeof SEALED_PINPAD_FORMAT;
  device: DeviceInfo;
  slotCount: number;
  state: PinPadState;
  slots: SlotInfo[];
  iv: string;
  ciphertext: string;
  tag: string;
}

interface SlotEntry {
  role: KeyRole;
  algorithm: PinPadAlgorithm;
  handle: KeyHandle;
  kcv: string;
  loadedAt: Date;
  under: number | undefined;
}

const NAME_RE = /^[\x21-\x7e](?:[\x20-\x7e]{0,62}[\x21-\x7e])?$/;

function fail(code: string, reason: string, field?: string): never {
  throw new PinPadError(code, reason, { field });
}

function checkName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !NAME_RE.test(value)) {
    fail(E.OPTION, 'must be 1 to 64 printable ASCII characters', field);
  }
  return value;
}

/** Copies key or cryptogram input into a fresh buffer the pad owns (and zeroises after use). */
function ownBytes(value: unknown, field: string): Buffer {
  if (value instanceof Uint8Array) return Buffer.from(value);
  if (typeof value === 'string' && /^[0-9A-Fa-f]*$/.test(value) && value.length % 2 === 0) {
    return fromHex(value, field);
  }
  return fail(E.KEY, 'must be bytes or an even number of hex digits', field);
}

function checkAlgorithm<T extends PinPadAlgorithm>(value: unknown, allowed: readonly T[], field: string): T {
  if (!allowed.includes(value as T)) {
    fail(E.ALGORITHM, `must be one of ${allowed.join(', ')}`, field);
  }
  return value as T;
}

/** Makes a handle from owned bytes after checking the length; the bytes are zeroised either way. */
function handleFrom(algorithm: PinPadAlgorithm, bytes: Buffer, field: string): KeyHandle {
  try {
    if (bytes.length !== KEY_BYTES[algorithm]) {
      fail(E.KEY, `a ${algorithm} key is ${KEY_BYTES[algorithm]} bytes, got ${bytes.length}`, field);
    }
    return createKey(algorithm, bytes);
  } finally {
    zeroize(bytes);
  }
}

/** True when `kcv` is the legacy check value of `key`; a malformed value is a POSKEY_ERR_PINPAD_KCV. */
function kcvMatches(key: KeyHandle, kcv: unknown, field: string): boolean {
  const bytes = kcv instanceof Uint8Array ? Buffer.from(kcv) : typeof kcv === 'string' ? kcv : undefined;
  const length = bytes === undefined ? 0 : typeof bytes === 'string' ? bytes.length / 2 : bytes.length;
  if (
    bytes === undefined ||
    (typeof bytes === 'string' && !/^(?:[0-9A-Fa-f]{2})+$/.test(bytes)) ||
    length < MIN_KCV_BYTES ||
    length > key.blockSize
  ) {
    fail(E.KCV, `check value must be ${MIN_KCV_BYTES} to ${key.blockSize} bytes of hex`, field);
  }
  return verifyCheckValue(key, bytes, 'legacy');
}

/** A key handle whose check value was verified, ready to be stored. */
interface Staged {
  slot: number;
  entry: SlotEntry;
}

export class PinPad {
  readonly slotCount: number;
  readonly #device: { serial: string; model: string; firmware: string; apps: string[] };
  readonly #slots = new Map<number, SlotEntry>();
  readonly #now: () => Date;
  #state: PinPadState = 'normal';
  #clockOffsetMs = 0;

  constructor(options: PinPadOptions = {}) {
    const slots = options.slots ?? DEFAULT_SLOT_COUNT;
    if (!Number.isInteger(slots) || slots < MIN_SLOTS || slots > 255) {
      fail(E.OPTION, `slot count must be an integer from ${MIN_SLOTS} to 255`, 'slots');
    }
    this.slotCount = slots;
    this.#device = {
      serial: checkName(options.serial ?? `PP${randomBytes(5).toString('hex').toUpperCase()}`, 'serial'),
      model: checkName(options.model ?? 'poskey-sim', 'model'),
      firmware: checkName(options.firmware ?? '1.0.0', 'firmware'),
      apps: [],
    };
    for (const app of options.apps ?? []) this.installApp(app);
    this.#now = options.now ?? (() => new Date());
  }

  // --- device ----------------------------------------------------------------------------------

  get device(): DeviceInfo {
    return { ...this.#device, apps: Object.freeze([...this.#device.apps]) };
  }

  get state(): PinPadState {
    return this.#state;
  }

  /** Appends an application to the ordered list of installed applications (no duplicates). */
  installApp(name: string): void {
    checkName(name, 'app');
    if (this.#device.apps.includes(name)) fail(E.OPTION, 'application is already installed', 'app');
    this.#device.apps.push(name);
  }

  /** The device clock (set from the host's 0810 fields 12/13 at sign-in). */
  clock(): Date {
    return new Date(this.#now().getTime() + this.#clockOffsetMs);
  }

  setClock(date: Date): void {
    if (!(date instanceof Date) || Number.isNaN(date.getTime()))
      fail(E.OPTION, 'must be a valid date', 'date');
    this.#clockOffsetMs = date.getTime() - this.#now().getTime();
  }

  // --- key loading -----------------------------------------------------------------------------

  /**
   * The key loading device path: writes a clear TMK into `slot`. This is the only way (with
   * `injectTransportKey`) out of the tampered state. Working keys loaded under the slot's previous
   * TMK are erased with it. The caller's buffer is not changed; the pad keeps its own copy.
   * @throws POSKEY_ERR_PINPAD_SLOT, _ALGORITHM, _KEY, _KCV (when `kcv` is given and does not match)
   */
  injectTmk(slot: number, clearKey: Uint8Array | string, options: InjectOptions): SlotInfo {
    return this.#inject('tmk', slot, clearKey, options);
  }

  /**
   * Factory injection of the transport key (K0) that `provisionFromTransportCryptogram` decrypts
   * TMKs under. Like `injectTmk`, it is part of the injection path and clears a tamper.
   */
  injectTransportKey(slot: number, clearKey: Uint8Array | string, options: InjectOptions): SlotInfo {
    return this.#inject('transport', slot, clearKey, options);
  }

  /**
   * Loads a TMK delivered as a legacy ECB cryptogram under the transport key in `transportKeySlot`,
   * checking its KCV. The TMK has the transport key's algorithm unless `options.algorithm` says so.
   * @throws POSKEY_ERR_PINPAD_TAMPERED, _SLOT, _EMPTY, _ROLE, _ALGORITHM, _KEY, _KCV
   */
  provisionFromTransportCryptogram(
    slot: number,
    transportKeySlot: number,
    cryptogram: string | Uint8Array,
    kcv: string | Uint8Array,
    options: { algorithm?: MasterKeyAlgorithm } = {},
  ): SlotInfo {
    this.#live();
    const transport = this.#use(transportKeySlot, 'transport', 'transportKeySlot');
    const family: MasterKeyAlgorithm = transport.algorithm === 'sm4' ? 'sm4' : 'tdes';
    const algorithm = checkAlgorithm(options.algorithm ?? family, [family], 'algorithm');
    this.#targetSlot(slot, 'slot', transportKeySlot, true);
    const staged = this.#unwrap(slot, transport, transportKeySlot, {
      cryptogram,
      checkValue: kcv,
      role: 'tmk',
      algorithm,
      field: (n) => (n === 'checkValue' ? 'kcv' : n),
    });
    this.#commit([staged]);
    return this.#info(slot, staged.entry);
  }

  /**
   * Sign-in: decrypts a working key under the TMK in `key.under` and loads it into `slot` only when
   * its check value matches (constant-time compare). On any failure the slot is unchanged.
   * @throws POSKEY_ERR_PINPAD_KCV on a mismatch, plus _TAMPERED, _SLOT, _EMPTY, _ROLE, _ALGORITHM, _KEY
   */
  loadWorkingKey(slot: number, key: WorkingKeyLoad): SlotInfo {
    return this.loadWorkingKeySet([{ ...key, slot }])[0]!;
  }

  /**
   * Loads several working keys all-or-nothing (a sign-in's PIK, MAK and TDK): every cryptogram is
   * decrypted and checked before any slot changes. `name` (pik, mak, tdk) prefixes the error's field.
   */
  loadWorkingKeySet(keys: readonly (WorkingKeyLoad & { slot: number; name?: string })[]): SlotInfo[] {
    this.#live();
    if (!Array.isArray(keys) || keys.length === 0) fail(E.KEY, 'no keys to load', 'keys');
    const targets = new Set<number>();
    const staged: Staged[] = [];
    try {
      for (const k of keys) {
        const field = (n: string) => (k.name === undefined ? n : `${k.name}.${n}`);
        if (!WORKING_ROLES.includes(k.role)) fail(E.ROLE, 'must be pin, mac or data', field('role'));
        this.#targetSlot(k.slot, field('slot'), k.under, false);
        if (targets.has(k.slot)) fail(E.SLOT, 'two keys for one slot', field('slot'));
        targets.add(k.slot);
        const tmk = this.#use(k.under, 'tmk', field('under'));
        const allowed: PinPadAlgorithm[] = tmk.algorithm === 'sm4' ? ['sm4'] : ['des', 'tdes'];
        const algorithm = checkAlgorithm(k.algorithm, allowed, field('algorithm'));
        staged.push(this.#unwrap(k.slot, tmk, k.under, { ...k, algorithm, field }));
      }
    } catch (e) {
      for (const s of staged) s.entry.handle.destroy();
      throw e;
    }
    this.#commit(staged);
    return staged.map((s) => this.#info(s.slot, s.entry));
  }

  /** Zeroises one slot. */
  erase(slot: number): void {
    this.#slotNumber(slot, 'slot');
    this.#drop(slot);
  }

  // --- operations ------------------------------------------------------------------------------

  /**
   * PIN entry: the clear PIN goes in, only the encrypted PIN block comes out.
   * @throws POSKEY_ERR_PINPAD_ROLE unless the slot holds a PIN key; PIN and PAN errors from the
   *   PIN block code (POSKEY_ERR_PIN_LENGTH, _PIN_DIGITS, POSKEY_ERR_PAN)
   */
  encryptPin(slot: number, entry: PinEntry): Buffer {
    this.#live();
    const key = this.#use(slot, 'pin', 'slot');
    const format = entry.format ?? (key.algorithm === 'sm4' ? 'sm4' : 0);
    if (!PIN_FORMATS.includes(format)) fail(E.ALGORITHM, 'PIN block format must be 0, 1, 3 or sm4', 'format');
    if ((format === 'sm4') !== (key.algorithm === 'sm4')) {
      fail(E.ALGORITHM, `format ${String(format)} does not fit a ${key.algorithm} PIN key`, 'format');
    }
    const opts: { format: PinBlockFormat; pin: string; pan?: string } = { format, pin: entry.pin };
    if (entry.pan !== undefined) opts.pan = entry.pan;
    return encryptPinBlock(key.handle, opts);
  }

  /**
   * MAC under the slot's MAC key: 'unionpay-ecb' returns field 64's 8 ASCII hex characters as bytes,
   * 'x919' the 8-byte ISO 9797-1 algorithm 3 MAC (DES/TDES keys only).
   */
  mac(slot: number, algorithm: PinPadMacAlgorithm, data: Uint8Array): Buffer {
    this.#live();
    const key = this.#use(slot, 'mac', 'slot');
    return generateMac(this.#macAlgorithm(algorithm, key), key.handle, data);
  }

  /** Recomputes the MAC and compares in constant time. */
  verifyMac(slot: number, algorithm: PinPadMacAlgorithm, data: Uint8Array, mac: Uint8Array): boolean {
    this.#live();
    const key = this.#use(slot, 'mac', 'slot');
    return verifyMacBytes(this.#macAlgorithm(algorithm, key), key.handle, data, mac);
  }

  /** TDK track encryption (53.3 = 1): one block of the track enciphered under the data key. */
  encryptTrack(slot: number, track: string): string {
    this.#live();
    const key = this.#use(slot, 'data', 'slot');
    return transformTrack(track, key.handle.blockSize as 8 | 16, (block) => key.handle.ecbEncrypt(block));
  }

  /** Zeroises every slot and enters the tamper state ("security attack") until the next injection. */
  tamper(): void {
    for (const slot of [...this.#slots.keys()]) this.#drop(slot);
    this.#state = 'tampered';
  }

  // --- metadata --------------------------------------------------------------------------------

  /** Metadata of one slot, or undefined when it is empty. */
  slotInfo(slot: number): SlotInfo | undefined {
    this.#slotNumber(slot, 'slot');
    const entry = this.#slots.get(slot);
    return entry === undefined ? undefined : this.#info(slot, entry);
  }

  /** Metadata of every loaded slot, in slot order. */
  listSlots(): SlotInfo[] {
    return [...this.#slots.keys()].sort((a, b) => a - b).map((s) => this.#info(s, this.#slots.get(s)!));
  }

  toJSON(): { device: DeviceInfo; state: PinPadState; slotCount: number; slots: SlotInfo[] } {
    return { device: this.device, state: this.#state, slotCount: this.slotCount, slots: this.listSlots() };
  }

  toString(): string {
    return `PinPad(${this.#device.serial}, ${this.#state}, ${this.#slots.size}/${this.slotCount} slots)`;
  }

  [inspect.custom](): string {
    const slots = this.listSlots().map((s) => `${s.slot}:${s.role}/${s.algorithm} kcv ${s.kcv}`);
    return `${this.toString()} [${slots.join(', ')}]`;
  }

  // --- sealing ---------------------------------------------------------------------------------

  /**
   * The secure storage encrypted under `storageKey` (32 bytes, AES-256-GCM). Slot metadata, device
   * info and `context` are authenticated, the keys are encrypted; no clear key leaves this method.
   */
  seal(storageKey: Uint8Array, context = ''): SealedPinPad {
    checkStorageKey(storageKey);
    const slots = this.listSlots();
    const parts = slots.map((s) => this.#slots.get(s.slot)!.handle.exportKeyBytes());
    const clear = Buffer.concat(parts);
    const meta = {
      format: SEALED_PINPAD_FORMAT,
      device: this.device,
      slotCount: this.slotCount,
      state: this.#state,
      slots,
    } as const;
    try {
      const { iv, ciphertext, tag } = gcmSeal(storageKey, clear, sealAad(meta, context));
      return {
        ...meta,
        device: { ...meta.device, apps: [...meta.device.apps] },
        iv: toHex(iv),
        ciphertext: toHex(ciphertext),
        tag: toHex(tag),
      };
    } finally {
      zeroize(clear, ...parts);
    }
  }

  /**
   * Rebuilds a pad from `seal` output. Any failure (wrong key, edited metadata, a key whose KCV
   * disagrees with its slot record) is one POSKEY_ERR_PINPAD_STORE that does not say which.
   */
  static unseal(
    doc: SealedPinPad,
    storageKey: Uint8Array,
    context = '',
    options: Pick<PinPadOptions, 'now'> = {},
  ): PinPad {
    checkStorageKey(storageKey);
    const bad = (cause?: unknown): never => {
      throw new PinPadError(E.STORE, 'wrong device secret or corrupted PIN pad store', {
        field: 'store',
        cause,
      });
    };
    if (doc === null || typeof doc !== 'object' || doc.format !== SEALED_PINPAD_FORMAT) bad();
    let clear: Buffer | undefined;
    try {
      const sealed = {
        iv: fromHex(doc.iv, 'iv'),
        ciphertext: fromHex(doc.ciphertext, 'ciphertext'),
        tag: fromHex(doc.tag, 'tag'),
      };
      clear = gcmOpen(storageKey, sealed, sealAad(doc, context));
    } catch (e) {
      bad(e);
    }
    try {
      const pad = new PinPad({ ...doc.device, slots: doc.slotCount, ...options });
      pad.#restore(doc, clear!);
      return pad;
    } catch (e) {
      return bad(e);
    } finally {
      zeroize(clear);
    }
  }

  #restore(doc: SealedPinPad, clear: Buffer): void {
    let offset = 0;
    for (const s of doc.slots) {
      const algorithm = checkAlgorithm(s.algorithm, ALGORITHMS, 'algorithm');
      if (!ROLES.includes(s.role)) throw new Error('unknown key role');
      const length = KEY_BYTES[algorithm];
      if (offset + length > clear.length) throw new Error('key data shorter than the slot table');
      const handle = handleFrom(algorithm, Buffer.from(clear.subarray(offset, offset + length)), 'key');
      offset += length;
      const kcv = checkValue(handle, INFO_KCV).value;
      if (kcv !== s.kcv) {
        handle.destroy();
        throw new Error('slot check value mismatch');
      }
      this.#slotNumber(s.slot, 'slot');
      this.#slots.set(s.slot, {
        role: s.role,
        algorithm,
        handle,
        kcv,
        loadedAt: new Date(s.loadedAt),
        under: s.under,
      });
    }
    if (offset !== clear.length) throw new Error('key data longer than the slot table');
    this.#state = doc.state === 'tampered' ? 'tampered' : 'normal';
  }

  // --- internals -------------------------------------------------------------------------------

  #inject(role: 'tmk' | 'transport', slot: number, clearKey: unknown, options: InjectOptions): SlotInfo {
    this.#slotNumber(slot, 'slot');
    const opts: Partial<InjectOptions> = options ?? {};
    const algorithm = checkAlgorithm(opts.algorithm, ['tdes', 'sm4'] as const, 'algorithm');
    const handle = handleFrom(algorithm, ownBytes(clearKey, 'clearKey'), 'clearKey');
    if (opts.kcv !== undefined && !kcvMatches(handle, opts.kcv, 'kcv')) {
      handle.destroy();
      fail(E.KCV, 'key check value does not match the key', 'kcv');
    }
    const entry = this.#entry(role, algorithm, handle, undefined);
    this.#commit([{ slot, entry }]);
    // Injection is the device's recovery path: a fresh key from the key loading device ends a tamper.
    this.#state = 'normal';
    return this.#info(slot, entry);
  }

  #unwrap(
    slot: number,
    kek: SlotEntry,
    kekSlot: number,
    k: {
      cryptogram: unknown;
      checkValue: unknown;
      role: KeyRole;
      algorithm: PinPadAlgorithm;
      field: (name: 'cryptogram' | 'checkValue') => string;
    },
  ): Staged {
    const cryptogram = ownBytes(k.cryptogram, k.field('cryptogram'));
    if (cryptogram.length !== KEY_BYTES[k.algorithm]) {
      fail(
        E.KEY,
        `a ${k.algorithm} key cryptogram is ${KEY_BYTES[k.algorithm]} bytes`,
        k.field('cryptogram'),
      );
    }
    const handle = handleFrom(k.algorithm, kek.handle.ecbDecrypt(cryptogram), k.field('cryptogram'));
    let ok = false;
    try {
      ok = kcvMatches(handle, k.checkValue, k.field('checkValue'));
    } finally {
      if (!ok) handle.destroy();
    }
    if (!ok) fail(E.KCV, 'check value does not match: working key download failed', k.field('checkValue'));
    return { slot, entry: this.#entry(k.role, k.algorithm, handle, kekSlot) };
  }

  #entry(role: KeyRole, algorithm: PinPadAlgorithm, handle: KeyHandle, under: number | undefined): SlotEntry {
    return { role, algorithm, handle, kcv: checkValue(handle, INFO_KCV).value, loadedAt: this.#now(), under };
  }

  /** Stores staged keys; a new master key also erases the keys that were loaded under the old one. */
  #commit(staged: readonly Staged[]): void {
    for (const { slot, entry } of staged) {
      const old = this.#slots.get(slot);
      if (old !== undefined && (old.role === 'tmk' || old.role === 'transport')) {
        for (const [s, e] of [...this.#slots]) if (e.under === slot) this.#drop(s);
      }
      this.#drop(slot);
      this.#slots.set(slot, entry);
    }
  }

  #drop(slot: number): void {
    this.#slots.get(slot)?.handle.destroy();
    this.#slots.delete(slot);
  }

  #live(): void {
    if (this.#state === 'tampered') {
      fail(
        E.TAMPERED,
        'security attack: the PIN pad was tampered with and has erased its keys; inject it again',
      );
    }
  }

  #slotNumber(slot: unknown, field: string): number {
    if (!Number.isInteger(slot) || (slot as number) < 0 || (slot as number) >= this.slotCount) {
      fail(E.SLOT, `slot must be an integer from 0 to ${this.slotCount - 1}`, field);
    }
    return slot as number;
  }

  /** A slot that may receive a decrypted key: not the key it is decrypted under, not a master key. */
  #targetSlot(slot: number, field: string, under: number | undefined, replacesTmk: boolean): void {
    this.#slotNumber(slot, field);
    if (slot === under) fail(E.SLOT, 'a key cannot replace the key it is encrypted under', field);
    const role = this.#slots.get(slot)?.role;
    if (role === 'transport' || (role === 'tmk' && !replacesTmk)) {
      fail(E.SLOT, `slot holds a ${role === 'tmk' ? 'TMK' : 'transport key'}; erase it first`, field);
    }
  }

  #use(slot: number, role: KeyRole, field: string): SlotEntry {
    this.#slotNumber(slot, field);
    const entry = this.#slots.get(slot);
    if (entry === undefined) fail(E.EMPTY, `slot ${slot} holds no key`, field);
    if (entry.role !== role) fail(E.ROLE, `slot ${slot} holds a ${entry.role} key, not a ${role} key`, field);
    return entry;
  }

  #macAlgorithm(algorithm: PinPadMacAlgorithm, key: SlotEntry): 'unionpay-ecb' | 'retail' {
    if (algorithm === 'unionpay-ecb') return algorithm;
    if (algorithm !== 'x919') fail(E.ALGORITHM, 'MAC algorithm must be unionpay-ecb or x919', 'algorithm');
    if (key.algorithm === 'sm4') fail(E.ALGORITHM, 'the X9.19 MAC needs a DES or TDES key', 'algorithm');
    return 'retail';
  }

  #info(slot: number, e: SlotEntry): SlotInfo {
    const info: SlotInfo = {
      slot,
      role: e.role,
      algorithm: e.algorithm,
      bits: KEY_BYTES[e.algorithm] * 8,
      kcv: e.kcv,
      loadedAt: e.loadedAt.toISOString(),
    };
    if (e.under !== undefined) info.under = e.under;
    return info;
  }
}

function checkStorageKey(key: unknown): void {
  if (!(key instanceof Uint8Array) || key.length !== 32) {
    fail(E.STORE, 'storage key must be 32 bytes', 'storageKey');
  }
}

/** Authenticated data: everything in the sealed document except the ciphertext, in a fixed order. */
function sealAad(
  doc: Pick<SealedPinPad, 'format' | 'device' | 'slotCount' | 'state' | 'slots'>,
  context: string,
): Buffer {
  const d = doc.device;
  const canonical = {
    format: doc.format,
    device: { serial: d.serial, model: d.model, firmware: d.firmware, apps: [...d.apps] },
    slotCount: doc.slotCount,
    state: doc.state,
    slots: doc.slots.map((s) => [s.slot, s.role, s.algorithm, s.bits, s.kcv, s.loadedAt, s.under ?? null]),
  };
  return Buffer.from(`${context}\0${JSON.stringify(canonical)}`, 'utf8');
}
