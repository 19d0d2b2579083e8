/**
 * Key handling shared by the calculator's operations: the key length is checked against the
 * algorithm before any handle is made, so a wrong length names the flag (`--key`), and every
 * handle is destroyed (zeroised) when the operation ends, even on a throw.
 */
import { assertLength } from '../../crypto/bytes.js';
import { type CipherAlgorithm, createKey, KEY_LENGTHS, type KeyHandle } from '../../crypto/cipher.js';

/** Makes a handle for `bytes` under `alg`; a wrong length is POSKEY_ERR_LENGTH naming `flag`. */
export function keyFor(alg: CipherAlgorithm, bytes: Uint8Array, flag: string): KeyHandle {
  assertLength(bytes, KEY_LENGTHS[alg], flag);
  return createKey(alg, bytes);
}

/** Runs `fn` with a handle for the key, destroying the handle afterwards. */
export function withKey<T>(
  alg: CipherAlgorithm,
  bytes: Uint8Array,
  flag: string,
  fn: (key: KeyHandle) => T,
): T {
  const key = keyFor(alg, bytes, flag);
  try {
    return fn(key);
  } finally {
    key.destroy();
  }
}
