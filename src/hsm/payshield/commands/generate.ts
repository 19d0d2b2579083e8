/**
 * Key generation: A0 (generate a key, modes 0 and 1), HC (generate a TMK/TPK under the current
 * key), HA (generate a TAK under a TMK).
 *
 * Field layouts follow payShield with a key-block LMK as public clients send them
 * (ut-codec-payshield test frames, ThalesSim A0, pythales HC):
 *   A0: mode, key type, key scheme LMK, [mode 1: [;] [ZMK/TMK flag] ZMK/TMK, key scheme ZMK],
 *       [%LMK id], [#attributes]  →  key under LMK, [key under ZMK/TMK], KCV (6 H)
 *   HC: current key, [; key scheme TMK, key scheme LMK], [%LMK id], [#attributes]
 *       →  new key under the current key, new key under LMK
 *   HA: TMK, [; key scheme TMK, key scheme LMK], [%LMK id], [#attributes]
 *       →  TAK under TMK, TAK under LMK
 */
import type { HsmApi, KeyAlgorithm, KeyType } from '../../api.js';
import type { FieldCursor, KeyBlockAttributes, KeyScheme } from '../fields.js';
import {
  assertGranted,
  assertSchemeFits,
  defaultScheme,
  exportFormatOf,
  formatWrapped,
  kcv6,
  readKeyTypeCode,
  resolveAlgorithm,
  resolveKeyType,
} from './keys.js';
import { defineCommand } from './types.js';

/** Schemes a key may be returned in under a ZMK/TMK. */
export const EXPORT_SCHEMES: readonly KeyScheme[] = ['X', 'U', 'Y', 'T', 'Z', 'R', 'S'];

/** Default algorithm of a generated key when the request has no `#` attributes. */
const DEFAULT_ALGORITHM: KeyAlgorithm = 'tdes2';

interface A0Request {
  mode: '0' | '1';
  keyTypeCode: string;
  kek?: string;
  scheme?: KeyScheme;
  lmkId?: string;
  attrs?: KeyBlockAttributes;
}

/** Key scheme LMK: always S (this HSM's LMK is a key-block LMK). */
function readLmkScheme(c: FieldCursor): void {
  c.schemeFlag('keySchemeLmk', ['S']);
}

export const A0 = defineCommand({
  code: 'A0',
  name: 'Generate a key',
  parse(c): A0Request {
    const mode = c.oneOf('mode', 1, ['0', '1'] as const);
    const keyTypeCode = readKeyTypeCode(c);
    readLmkScheme(c);
    const req: A0Request = { mode, keyTypeCode };
    if (mode === '1') {
      c.take(';');
      // ZMK/TMK flag (0 ZMK, 1 TMK): the key block says which it is, so the flag is only checked.
      if (c.peek() === '0' || c.peek() === '1') c.raw('zmkTmkFlag', 1);
      req.kek = c.lmkKey('zmkTmk');
      req.scheme = c.schemeFlag('keySchemeZmk', EXPORT_SCHEMES);
    }
    req.lmkId = c.lmkId();
    req.attrs = c.keyBlockAttributes();
    return req;
  },
  run(hsm, req, ctx) {
    const keyType = resolveKeyType(req.keyTypeCode, req.attrs, 'zone');
    const algorithm = resolveAlgorithm(req.attrs, DEFAULT_ALGORITHM);
    if (req.scheme !== undefined) assertSchemeFits(req.scheme, algorithm);
    const out = hsm.generateKey(
      {
        keyType,
        algorithm,
        exportability: req.attrs?.exportability as 'E' | 'N' | 'S' | undefined,
        lmkId: req.lmkId,
        exportUnder:
          req.kek === undefined || req.scheme === undefined
            ? undefined
            : { kek: req.kek, format: exportFormatOf(req.scheme) },
      },
      ctx.actor,
    );
    assertGranted(req.attrs, out.info);
    const exported =
      out.exported === undefined || req.scheme === undefined
        ? ''
        : formatWrapped(req.scheme, out.exported.cryptogram);
    return { keyBlock: out.keyBlock, exported, kcv: kcv6(out.info.kcv) };
  },
  format: (r) => `S${r.keyBlock}${r.exported}${r.kcv}`,
});

interface TerminalKeyRequest {
  kek: string;
  scheme?: KeyScheme;
  lmkId?: string;
  attrs?: KeyBlockAttributes;
}

/** The fields HC and HA share after the key: [; scheme TMK, scheme LMK [reserved 0]] [%id] [#attrs]. */
function parseTerminalKey(c: FieldCursor, keyField: string): TerminalKeyRequest {
  const req: TerminalKeyRequest = { kek: c.lmkKey(keyField) };
  if (c.take(';')) {
    req.scheme = c.schemeFlag('keySchemeTmk', EXPORT_SCHEMES);
    readLmkScheme(c);
    // payShield puts a reserved '0' here on some firmware; accept it when present.
    c.take('0');
  }
  req.lmkId = c.lmkId();
  req.attrs = c.keyBlockAttributes();
  return req;
}

/** Generates `keyType` under the LMK and under `req.kek`, returning both in wire form. */
function generateUnderKek(
  hsm: HsmApi,
  req: TerminalKeyRequest,
  keyType: KeyType,
  algorithm: KeyAlgorithm,
  actor: string,
): { underKek: string; keyBlock: string } {
  const scheme = req.scheme ?? defaultScheme(algorithm);
  assertSchemeFits(scheme, algorithm);
  const out = hsm.generateKey(
    {
      keyType,
      algorithm,
      exportability: req.attrs?.exportability as 'E' | 'N' | 'S' | undefined,
      lmkId: req.lmkId,
      exportUnder: { kek: req.kek, format: exportFormatOf(scheme) },
    },
    actor,
  );
  assertGranted(req.attrs, out.info);
  return { underKek: formatWrapped(scheme, out.exported?.cryptogram ?? ''), keyBlock: out.keyBlock };
}

export const HC = defineCommand({
  code: 'HC',
  name: 'Generate a TMK or TPK under the current key',
  parse: (c) => parseTerminalKey(c, 'currentKey'),
  run(hsm, req, ctx) {
    const current = hsm.describeKey(req.kek);
    const keyType = req.attrs === undefined ? current.keyType : resolveKeyType('FFF', req.attrs, 'terminal');
    const algorithm = resolveAlgorithm(req.attrs, current.algorithm);
    return generateUnderKek(hsm, req, keyType, algorithm, ctx.actor);
  },
  format: (r) => `${r.underKek}S${r.keyBlock}`,
});

/** TAK algorithm that goes with a TMK: SM4 with SM4, AES-128 with AES, double-length TDES otherwise. */
function takAlgorithmFor(tmk: KeyAlgorithm): KeyAlgorithm {
  if (tmk === 'sm4') return 'sm4';
  return tmk.startsWith('aes') ? 'aes128' : 'tdes2';
}

export const HA = defineCommand({
  code: 'HA',
  name: 'Generate a TAK under a TMK',
  parse: (c) => parseTerminalKey(c, 'tmk'),
  run(hsm, req, ctx) {
    const keyType = req.attrs === undefined ? 'TAK' : resolveKeyType('003', req.attrs, 'terminal');
    const algorithm =
      req.attrs === undefined
        ? takAlgorithmFor(hsm.describeKey(req.kek).algorithm)
        : resolveAlgorithm(req.attrs, 'tdes2');
    return generateUnderKek(hsm, req, keyType, algorithm, ctx.actor);
  },
  format: (r) => `${r.underKek}S${r.keyBlock}`,
});
