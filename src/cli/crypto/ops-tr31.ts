/**
 * `tr31 unwrap|wrap`: TR-31 / ANSI X9.143 key blocks, versions A, B, C (TDES KBPK) and D (AES KBPK).
 * `unwrap` prints the CLEAR key: that is the calculator's job; production KBPKs stay in the HSM.
 */
import { toHex, zeroize } from '../../crypto/bytes.js';
import type { CipherAlgorithm } from '../../crypto/cipher.js';
import { checkValue } from '../../crypto/kcv.js';
import {
  ALGORITHMS,
  allowedKeyLengths,
  cipherAlgorithmOf,
  EXPORTABILITY,
  KEY_CONTEXTS,
  KEY_USAGES,
  MODES_OF_USE,
  OPTIONAL_BLOCK_IDS,
  parseHeader,
  type Tr31Header,
  unwrapKeyBlock,
  wrapKeyBlock,
} from '../../crypto/tr31.js';
import { keyFor, withKey } from './keys.js';
import { defineOp, hex, type Operation, type OpResult, text } from './schema.js';

/**
 * The KBPK's cipher: version D blocks (and any 32-byte KBPK) are AES, an 8-byte KBPK is DES, the rest
 * TDES. A KBPK that does not fit the block's version is then refused by the module with a message
 * that says so (e.g. an AES KBPK on a version B block).
 */
function kbpkAlgorithm(version: string | undefined, length: number): CipherAlgorithm {
  if (version === 'D' || length === 32) return 'aes';
  return length === 8 ? 'des' : 'tdes';
}

/** The KCV a key block's key is usually quoted with: CMAC (5 bytes) for AES, legacy (3 bytes) otherwise. */
function kcvOf(header: Tr31Header, key: Uint8Array): { kcv?: string; kcvMethod?: string } {
  if (!allowedKeyLengths(header.algorithm)?.includes(key.length)) return {};
  const alg = cipherAlgorithmOf(header, key.length);
  const method = alg === 'aes' ? 'cmac' : 'legacy';
  return withKey(alg, key, 'key', (k) => ({ kcv: checkValue(k, { method }).value, kcvMethod: method }));
}

/** Module field names of header positions, reported against the flag that carried the header. */
function headerFields(flag: string): Record<string, string> {
  const positions = ['version', 'length', 'usage', 'algorithm', 'modeOfUse', 'keyVersion', 'exportability'];
  const more = ['optionalBlockCount', 'keyContext', 'reserved', 'header', 'keyLength', 'payload', 'mac'];
  const fields: Record<string, string> = Object.fromEntries(
    [...positions, ...more].map((p) => [p, `${flag} ${p}`]),
  );
  fields.optionalBlocks = `${flag} optional block`;
  return fields;
}

function describe(code: string, table: Readonly<Record<string, string>>): string {
  const name = table[code];
  return name === undefined ? code : `${code} (${name})`;
}

/** Text form of a header: codes with their meaning, optional blocks by ID. */
function headerText(h: Tr31Header): OpResult {
  return {
    version: h.version,
    usage: describe(h.usage, KEY_USAGES),
    algorithm: describe(h.algorithm, ALGORITHMS),
    modeOfUse: describe(h.modeOfUse, MODES_OF_USE),
    keyVersion: h.keyVersion,
    exportability: describe(h.exportability, EXPORTABILITY),
    keyContext: describe(h.keyContext, KEY_CONTEXTS),
    ...(h.optionalBlocks.length
      ? {
          optionalBlocks: Object.fromEntries(
            h.optionalBlocks.map((b, i) => [
              h.optionalBlocks.findIndex((x) => x.id === b.id) === i ? b.id : `${b.id}#${i + 1}`,
              OPTIONAL_BLOCK_IDS[b.id] ? `${b.data} (${OPTIONAL_BLOCK_IDS[b.id]})` : b.data,
            ]),
          ),
        }
      : {}),
  };
}

const unwrap = defineOp({
  path: 'tr31 unwrap',
  summary: 'verify and decrypt a TR-31 key block; prints the header, the CLEAR key and its KCV',
  options: {
    kbpk: hex('key block protection key (TDES for A/B/C, AES for D)', { required: true }),
    block: text('block', 'the key block', { required: true }),
  },
  example:
    'tr31 unwrap --kbpk 89E88CF7931444F334BD7547FC3F380C --block A0072P0TE00E0000F5161ED902807AF26F1D62263644BD24192FDB3193C730301CEE8701',
  fields: { ...headerFields('--block'), kbpk: '--kbpk' },
  run({ kbpk, block }) {
    return withKey(kbpkAlgorithm(block[0], kbpk.length), kbpk, '--kbpk', (k) => {
      const { header, key } = unwrapKeyBlock({ kbpk: k, block });
      try {
        return { header, key: toHex(key), ...kcvOf(header, key) };
      } finally {
        zeroize(key);
      }
    });
  },
  text: (r) => ({ ...r, header: headerText(r.header as Tr31Header) }),
});

const wrap = defineOp({
  path: 'tr31 wrap',
  summary: 'wrap a key under a KBPK into a TR-31 key block (random padding: output differs each run)',
  options: {
    kbpk: hex('key block protection key (TDES for A/B/C, AES for D)', { required: true }),
    header: text('header', 'the header: 16 characters plus optional blocks; length and PB are computed', {
      required: true,
    }),
    key: hex('the clear key to wrap', { required: true }),
  },
  example:
    'tr31 wrap --kbpk 89E88CF7931444F334BD7547FC3F380C --header B0000P0TE00E0000 --key F039121BEC83D26B169BDCD5B22AAF8F',
  fields: { ...headerFields('--header'), kbpk: '--kbpk', key: '--key' },
  run({ kbpk, header, key }) {
    const kbpkHandle = keyFor(kbpkAlgorithm(header[0], kbpk.length), kbpk, '--kbpk');
    try {
      const block = wrapKeyBlock({ kbpk: kbpkHandle, header, key });
      return { block, ...kcvOf(parseHeader(header), key) };
    } finally {
      kbpkHandle.destroy();
    }
  },
});

export const tr31Ops: Operation[] = [unwrap, wrap];
