/**
 * Local Master Keys (LMKs): the AES-256 keys every working key outside the HSM is wrapped under.
 *
 * An LMK is formed at a ceremony from 2–9 custodian components (split knowledge, dual control: the
 * LMK is their XOR, so no custodian alone knows it), or generated at random in development mode.
 * Its clear bytes live only inside a KeyHandle in this process: `Lmk` has no accessor for them,
 * prints as `Lmk(00, KCV …)`, and serialises to its id, KCV and dev flag only. The HSM modules that
 * must use the key (sealing, key blocks) reach the handle through `lmkKey()`.
 *
 * Check value: AES-CMAC over a zero block, leftmost 5 bytes (10 hex digits), the AES method of
 * X9.24-1:2017 Annex A and of the X9.143 KC/KP blocks. A legacy E_K(0) KCV of an AES key would
 * differ, so every KCV printed here is a CMAC KCV, and says so (`LMK_KCV`).
 */
import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import { zeroize } from '../crypto/bytes.js';
import { createKey, type KeyHandle } from '../crypto/cipher.js';
import { type CheckValue, checkValue } from '../crypto/kcv.js';
import { combineComponents, MAX_COMPONENTS, MIN_COMPONENTS } from '../crypto/keys.js';
import { HsmError } from './errors.js';

/** LMK key length: AES-256. */
export const LMK_LENGTH = 32;

/** How LMK and component check values are computed: CMAC, 5 bytes. */
export const LMK_KCV = Object.freeze({ method: 'cmac', length: 5 } as const);

/** LMK identifiers are two decimal digits, as in payShield's `%nn` LMK identifier field. */
const LMK_ID_RE = /^[0-9]{2}$/;

let handleOf: (lmk: Lmk) => KeyHandle;

/** A loaded LMK. The key itself never leaves the object except through `lmkKey()` (HSM-internal). */
export class Lmk {
  /** Two decimal digits, '00'–'99'. */
  readonly id: string;
  /** CMAC check value, 10 upper-case hex digits (see `LMK_KCV`). */
  readonly kcv: string;
  /** True for a development LMK: key blocks under it are marked and must never reach production. */
  readonly dev: boolean;
  readonly #key: KeyHandle;

  static {
    handleOf = (lmk) => lmk.#key;
  }

  /** Takes ownership of `key` (an AES-256 handle); prefer `formLmk`, `generateDevLmk` or `lmkFromBytes`. */
  constructor(id: string, key: KeyHandle, dev: boolean) {
    assertLmkId(id);
    if (key.algorithm !== 'aes' || key.length !== LMK_LENGTH) {
      throw new HsmError('POSKEY_ERR_LMK_KEY', 'an LMK must be an AES-256 key', { field: 'key' });
    }
    this.id = id;
    this.#key = key;
    this.dev = dev;
    this.kcv = lmkCheckValue(key).value;
  }

  /** True once `destroy()` has zeroised the key. */
  get destroyed(): boolean {
    return this.#key.destroyed;
  }

  /** Zeroises the key and everything cached on it (derived key-block keys, KCV block). */
  destroy(): void {
    this.#key.destroy();
  }

  toString(): string {
    return `Lmk(${this.id}, KCV ${this.kcv}${this.dev ? ', DEVELOPMENT' : ''})`;
  }

  toJSON(): { id: string; kcv: string; dev: boolean } {
    return { id: this.id, kcv: this.kcv, dev: this.dev };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * The LMK's key handle, for the HSM modules that wrap, unwrap or seal under it. Nothing outside
 * src/hsm should call this; the handle must not be destroyed by the caller.
 * @throws POSKEY_ERR_KEY_DESTROYED when the LMK has been destroyed
 */
export function lmkKey(lmk: Lmk): KeyHandle {
  const key = handleOf(lmk);
  if (key.destroyed) {
    throw new HsmError('POSKEY_ERR_KEY_DESTROYED', `LMK ${lmk.id} has been destroyed`, { field: 'lmk' });
  }
  return key;
}

/** CMAC check value of an AES key, as used for LMKs and their components. */
function lmkCheckValue(key: KeyHandle): CheckValue {
  return checkValue(key, LMK_KCV);
}

/** @throws POSKEY_ERR_LMK_ID unless `id` is two decimal digits */
export function assertLmkId(id: unknown, field = 'lmkId'): asserts id is string {
  if (typeof id !== 'string' || !LMK_ID_RE.test(id)) {
    throw new HsmError('POSKEY_ERR_LMK_ID', 'LMK id must be two decimal digits (00-99)', {
      field,
      payShield: '13',
    });
  }
}

/**
 * An LMK from clear bytes, e.g. just unsealed. The bytes are copied; the caller zeroises its own.
 * @throws POSKEY_ERR_LMK_ID, POSKEY_ERR_LMK_KEY unless `bytes` is 32 bytes
 */
export function lmkFromBytes(id: string, bytes: Uint8Array, dev: boolean): Lmk {
  assertLmkId(id);
  if (!(bytes instanceof Uint8Array) || bytes.length !== LMK_LENGTH) {
    throw new HsmError('POSKEY_ERR_LMK_KEY', `an LMK must be ${LMK_LENGTH} bytes (AES-256)`, {
      field: 'key',
    });
  }
  return new Lmk(id, createKey('aes', bytes), dev);
}

/** Result of an LMK ceremony: what custodians are shown. */
export interface FormedLmk {
  lmk: Lmk;
  /** CMAC KCV of each component, in the order entered, so each custodian can confirm their entry. */
  componentKcvs: string[];
  /** CMAC KCV of the formed LMK (equal to `lmk.kcv`). */
  kcv: string;
}

function isAllZero(bytes: Uint8Array): boolean {
  let acc = 0;
  for (const b of bytes) acc |= b;
  return acc === 0;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/**
 * Checks LMK ceremony components: 2–9 of them, 32 bytes each, none all-zero and no two equal. The
 * last two rules keep split knowledge real: an all-zero component contributes nothing, and two
 * equal components cancel out, leaving the key known to whoever holds the rest.
 * @throws POSKEY_ERR_LMK_COMPONENTS for a wrong count, POSKEY_ERR_LMK_COMPONENT for a bad component
 */
export function assertLmkComponents(components: unknown): asserts components is Uint8Array[] {
  if (
    !Array.isArray(components) ||
    components.length < MIN_COMPONENTS ||
    components.length > MAX_COMPONENTS
  ) {
    const n = Array.isArray(components) ? components.length : 0;
    throw new HsmError(
      'POSKEY_ERR_LMK_COMPONENTS',
      `an LMK needs ${MIN_COMPONENTS} to ${MAX_COMPONENTS} components (dual control), got ${n}`,
      { field: 'components', payShield: '03' },
    );
  }
  components.forEach((c: unknown, i) => {
    const field = `components[${i}]`;
    if (!(c instanceof Uint8Array) || c.length !== LMK_LENGTH) {
      throw new HsmError('POSKEY_ERR_LMK_COMPONENT', `each component must be ${LMK_LENGTH} bytes (AES-256)`, {
        field,
        payShield: '27',
      });
    }
    if (isAllZero(c)) {
      throw new HsmError('POSKEY_ERR_LMK_COMPONENT', 'component is all zeros', { field, payShield: '15' });
    }
    const twin = components.findIndex((d: Uint8Array, j) => j < i && sameBytes(d, c));
    if (twin >= 0) {
      throw new HsmError('POSKEY_ERR_LMK_COMPONENT', `component repeats components[${twin}]`, {
        field,
        payShield: '15',
      });
    }
  });
}

/**
 * Forms an LMK from custodian components by XOR. Caller buffers are not modified; the combined
 * key exists only inside the returned Lmk.
 * @param id LMK id, two decimal digits
 * @param components 2–9 components of 32 bytes
 * @throws POSKEY_ERR_LMK_ID, POSKEY_ERR_LMK_COMPONENTS, POSKEY_ERR_LMK_COMPONENT (bad length,
 *   all-zero, repeated, or components that XOR to zero)
 */
export function formLmk(id: string, components: Uint8Array[]): FormedLmk {
  assertLmkId(id);
  assertLmkComponents(components);
  const combined = combineComponents('aes', components, { kcv: LMK_KCV });
  try {
    if (isAllZero(combined.key)) {
      throw new HsmError('POSKEY_ERR_LMK_COMPONENT', 'components cancel out to an all-zero key', {
        field: 'components',
        payShield: '15',
      });
    }
    const lmk = lmkFromBytes(id, combined.key, false);
    return { lmk, componentKcvs: combined.components.map((k) => k.value), kcv: lmk.kcv };
  } finally {
    zeroize(combined.key);
  }
}

/** Random component for a ceremony where the HSM deals the components (32 bytes, never all-zero). */
export function randomLmkComponent(): Buffer {
  let c = randomBytes(LMK_LENGTH);
  while (isAllZero(c)) c = randomBytes(LMK_LENGTH);
  return c;
}

/**
 * A random development LMK, marked `dev`. It is not formed from components, so it offers no split
 * knowledge: never use one for real keys.
 */
export function generateDevLmk(id = '00'): Lmk {
  assertLmkId(id);
  const bytes = randomLmkComponent();
  try {
    return lmkFromBytes(id, bytes, true);
  } finally {
    zeroize(bytes);
  }
}

/**
 * The LMKs loaded in the HSM, by id, with a default for new keys. Several can be loaded at once
 * during migration (old and new LMK side by side).
 */
export class LmkSet {
  readonly #lmks = new Map<string, Lmk>();
  #defaultId: string | undefined;

  /** The first LMK becomes the default unless `defaultId` names another. */
  constructor(lmks: Iterable<Lmk> = [], defaultId?: string) {
    for (const lmk of lmks) this.add(lmk);
    if (defaultId !== undefined) this.setDefault(defaultId);
  }

  /**
   * Adds an LMK; the set owns it from now on. The first LMK added becomes the default.
   * @throws POSKEY_ERR_LMK_DUPLICATE when an LMK with this id is already loaded
   */
  add(lmk: Lmk, options: { makeDefault?: boolean } = {}): void {
    if (!(lmk instanceof Lmk)) {
      throw new HsmError('POSKEY_ERR_TYPE', 'must be an Lmk', { field: 'lmk' });
    }
    if (this.#lmks.has(lmk.id)) {
      throw new HsmError('POSKEY_ERR_LMK_DUPLICATE', `LMK ${lmk.id} is already loaded`, { field: 'lmkId' });
    }
    this.#lmks.set(lmk.id, lmk);
    if (this.#defaultId === undefined || options.makeDefault) this.#defaultId = lmk.id;
  }

  /**
   * The LMK with this id, or the default LMK when `id` is omitted.
   * @throws POSKEY_ERR_LMK_UNKNOWN when no such LMK is loaded (payShield 13)
   */
  get(id?: string): Lmk {
    const want = id ?? this.#defaultId;
    const lmk = want === undefined ? undefined : this.#lmks.get(want);
    if (lmk === undefined) {
      const what = want === undefined ? 'no LMK is loaded' : `LMK ${want} is not loaded`;
      throw new HsmError('POSKEY_ERR_LMK_UNKNOWN', what, { field: 'lmkId', payShield: '13' });
    }
    return lmk;
  }

  has(id: string): boolean {
    return this.#lmks.has(id);
  }

  /** Id of the LMK new keys go under; undefined while the set is empty. */
  get defaultId(): string | undefined {
    return this.#defaultId;
  }

  /** @throws POSKEY_ERR_LMK_UNKNOWN when `id` is not loaded */
  setDefault(id: string): void {
    this.#defaultId = this.get(id).id;
  }

  /**
   * Unloads and zeroises an LMK (the old one, after migration). When it was the default, the
   * lowest remaining id becomes the default.
   * @throws POSKEY_ERR_LMK_UNKNOWN when `id` is not loaded
   */
  remove(id: string): void {
    const lmk = this.get(id);
    this.#lmks.delete(id);
    lmk.destroy();
    if (this.#defaultId === id) this.#defaultId = this.ids()[0];
  }

  /** Loaded ids, sorted. */
  ids(): string[] {
    return [...this.#lmks.keys()].sort();
  }

  get size(): number {
    return this.#lmks.size;
  }

  [Symbol.iterator](): IterableIterator<Lmk> {
    return this.#lmks.values();
  }

  /** Zeroises and unloads every LMK. */
  destroy(): void {
    for (const lmk of this.#lmks.values()) lmk.destroy();
    this.#lmks.clear();
    this.#defaultId = undefined;
  }

  toJSON(): { default: string | undefined; lmks: { id: string; kcv: string; dev: boolean }[] } {
    return { default: this.#defaultId, lmks: this.ids().map((id) => this.get(id).toJSON()) };
  }

  [inspect.custom](): string {
    return `LmkSet(${this.ids()
      .map((id) => this.get(id).toString())
      .join(', ')})`;
  }
}
