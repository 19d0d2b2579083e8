/**
 * BU: generate a key check value.
 *
 *   BU: key type code (2), key length flag (1), key (S + block), [; key type (3)],
 *       [; reserved (2) KCV type (1)]  →  KCV (16 H for type 0, 6 H for type 1)
 *
 * With a key-block LMK the key type code and length flag are carried for compatibility (clients
 * send FF and F); the key block's own header decides what the key is. An explicit 3-character key
 * type after `;` is checked against the key (error BD when it differs). Layout: ut-codec-payshield
 * BU test frames (`BUFFFS…;FFF;001`), ThalesSim GenerateCheckValue_BU.
 */
import { assertKeyTypeCode, KEY_BLOCK_TYPE, readKeyTypeCode } from './keys.js';
import { defineCommand } from './types.js';

/** KCV type → bytes returned: 0 = 8 bytes (16 H), 1 = 3 bytes (6 H). */
const KCV_BYTES: Readonly<Record<string, number>> = { '0': 8, '1': 3 };

interface BuRequest {
  key: string;
  keyTypeCode?: string;
  kcvBytes: number;
}

export const BU = defineCommand({
  code: 'BU',
  name: 'Generate a key check value',
  parse(c): BuRequest {
    // Two hex digits (an LMK-pair code) or FF; a key block's own header says what the key is.
    const code = c.hex('keyTypeCode', 2, '04');
    c.oneOf('keyLengthFlag', 1, ['0', '1', '2', 'F'], '05');
    const req: BuRequest = { key: c.lmkKey('key'), kcvBytes: KCV_BYTES['0']! };
    // The 3-character key type follows only key type code FF; otherwise the first group is the KCV type.
    if (code === 'FF' && c.take(';')) req.keyTypeCode = readKeyTypeCode(c);
    if (c.take(';')) {
      c.oneOf('reserved', 2, ['00']);
      req.kcvBytes = KCV_BYTES[c.oneOf('kcvType', 1, ['0', '1'])]!;
    }
    return req;
  },
  run(hsm, req) {
    if (req.keyTypeCode !== undefined && req.keyTypeCode !== KEY_BLOCK_TYPE) {
      assertKeyTypeCode(req.keyTypeCode, hsm.describeKey(req.key));
    }
    return { kcv: hsm.checkValue(req.key, undefined, req.kcvBytes).value };
  },
  format: (r) => r.kcv.toUpperCase(),
});
