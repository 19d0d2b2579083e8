/**
 * exportKeyTr34: the HSM builds the TR-34 key token around its own key, so remote key loading never
 * sees the clear TMK. The device opens the token and finds the key whose check value the HSM
 * reports; a key the LMK header marks non-exportable, or a device outside the vendor CA, is refused;
 * the TCP client says the wire has no such command.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createKey } from '../../src/crypto/cipher.js';
import { checkValue } from '../../src/crypto/kcv.js';
import { PoskeyError } from '../../src/errors.js';
import { createTcpClient } from '../../src/hsm/client/tcp.js';
import { Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';
import { createRootCa, issueCertificate } from '../../src/keyload/ca.js';
import { Tr34Krd } from '../../src/keyload/tr34.js';

const hsm = new Hsm({ lmks: new LmkSet([generateDevLmk('00')]) });
const ca = createRootCa({ algorithm: 'rsa', cn: 'Vendor Root' });
const kdh = issueCertificate(ca, { role: 'kdh', cn: 'KDH' });
const device = issueCertificate(ca, { role: 'krd', cn: 'PINPAD', deviceSerial: 'SN-1' });
const HEADER = 'A0000K0TB00E0000';

function tokenFor(keyBlock: string, krdCert = device.cert, nonce: Uint8Array = Buffer.alloc(16, 7)) {
  return hsm.exportKeyTr34({
    keyBlock,
    token: {
      kdh: { cert: kdh.cert, privateKey: kdh.privateKey! },
      krdCert,
      nonce,
      keyBlockHeader: HEADER,
      algorithm: 'rsa',
      caRoot: ca.cert,
    },
  });
}

describe('Hsm.exportKeyTr34', () => {
  it('envelopes the TMK for the device, which opens it and finds the reported check value', () => {
    const { keyBlock, info } = hsm.generateKey({ keyType: 'TMK', algorithm: 'tdes2' });
    const krd = new Tr34Krd({ cert: device.cert, privateKey: device.privateKey!, caRoot: ca.cert });
    const nonce = krd.createNonce();
    const out = tokenFor(keyBlock, device.cert, nonce);
    assert.equal(out.kcv.value, info.kcv.value);
    const opened = krd.openKeyToken(Buffer.from(out.token, 'base64'));
    const kcv = checkValue(createKey('tdes', opened.clearKey), { method: 'legacy', length: 3 }).value;
    assert.equal(kcv, hsm.checkValue(keyBlock, 'legacy', 3).value);
  });

  it('refuses a key whose LMK header says it may never leave (exportability N)', () => {
    const { keyBlock } = hsm.generateKey({ keyType: 'TMK', algorithm: 'tdes2', exportability: 'N' });
    assert.throws(
      () => tokenFor(keyBlock),
      (e: unknown) => e instanceof PoskeyError && /EXPORT|USAGE/.test(e.code),
    );
  });

  it('refuses a device certificate from another CA', () => {
    const { keyBlock } = hsm.generateKey({ keyType: 'TMK', algorithm: 'tdes2' });
    const other = issueCertificate(createRootCa({ algorithm: 'rsa', cn: 'Other Root' }), {
      role: 'krd',
      cn: 'PINPAD',
      deviceSerial: 'SN-2',
    });
    assert.throws(
      () => tokenFor(keyBlock, other.cert),
      (e: unknown) => e instanceof PoskeyError && e.code.startsWith('POSKEY_ERR_CERT_'),
    );
  });

  it('is not offered over the payShield wire', async () => {
    const client = createTcpClient({ addresses: [{ host: '127.0.0.1', port: 9 }] });
    try {
      await assert.rejects(
        client.exportKeyTr34({ keyBlock: 'x', token: {} as never }),
        (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_HSM_UNSUPPORTED',
      );
    } finally {
      await client.close();
    }
  });
});
