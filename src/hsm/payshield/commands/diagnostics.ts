/**
 * NC (diagnostics: LMK check value and firmware) and B2 (echo).
 *
 * NC response, as in the pythales README (`SSSSNC` → `SSSSND00` + 16 H LMK check value +
 * `0007-E000`): the check value field is 16 characters; poskey LMKs have a 10-hex CMAC check value
 * (lmk.ts), so it is right-padded with zeros. The 9-character firmware field carries the poskey
 * version, padded with spaces.
 */
import { HsmError } from '../../errors.js';
import { defineCommand } from './types.js';

/** Width of NC's LMK check value field. */
const NC_KCV_WIDTH = 16;
/** Width of NC's firmware number field. */
const NC_FIRMWARE_WIDTH = 9;

/** Longest B2 echo message: what fits a frame with a header and the response code. */
export const MAX_ECHO_LENGTH = 0xff00;

export const NC = defineCommand({
  code: 'NC',
  name: 'Perform diagnostics',
  parse: () => ({}),
  run(hsm) {
    const d = hsm.diagnostics();
    const lmk = d.lmks[0];
    if (lmk === undefined) {
      throw new HsmError('POSKEY_ERR_LMK_UNKNOWN', 'no LMK is loaded', { field: 'lmk', payShield: '13' });
    }
    return { kcv: lmk.kcv, version: d.version };
  },
  format: ({ kcv, version }) =>
    kcv.toUpperCase().slice(0, NC_KCV_WIDTH).padEnd(NC_KCV_WIDTH, '0') +
    version.slice(0, NC_FIRMWARE_WIDTH).padEnd(NC_FIRMWARE_WIDTH, ' '),
});

export const B2 = defineCommand({
  code: 'B2',
  name: 'Echo test',
  parse(c) {
    const length = c.hexNumber('length', 4, 1, MAX_ECHO_LENGTH);
    return { message: c.raw('message', length) };
  },
  run: (_hsm, req) => req,
  format: ({ message }) => message,
});
