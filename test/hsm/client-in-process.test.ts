/**
 * The in-process client: every HsmApi operation, asynchronous, with the HSM's own error codes plus
 * the payShield code the wire would carry, copies of object results, the default audit actor, and
 * POSKEY_ERR_HSM_CLOSED after close().
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PoskeyError } from '../../src/errors.js';
import type { GenerateKeyRequest, HsmApi } from '../../src/hsm/api.js';
import { HsmRemoteError, payShieldCodeOf, withPayShieldCode } from '../../src/hsm/client/errors.js';
import { createInProcessClient } from '../../src/hsm/client/in-process.js';
import { HsmError } from '../../src/hsm/errors.js';
import { HSM_OPERATIONS, Hsm } from '../../src/hsm/hsm.js';
import { generateDevLmk, LmkSet } from '../../src/hsm/lmk.js';

/** A real Hsm that records the actor of generateKey and can be told to fail like a bug would. */
class RecordingHsm extends Hsm {
  readonly actors: (string | undefined)[] = [];
  bug = false;

  override generateKey(req: GenerateKeyRequest, actor?: string) {
    this.actors.push(actor);
    return super.generateKey(req, actor);
  }

  override randomBytes(length: number): string {
    if (this.bug) throw new TypeError('something undefined');
    return super.randomBytes(length);
  }
}

const hsm = new RecordingHsm({ lmks: new LmkSet([generateDevLmk('00')]) });

async function rejection(p: Promise<unknown>): Promise<PoskeyError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof PoskeyError, `expected a PoskeyError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

describe('createInProcessClient', () => {
  it('exposes every HsmApi operation and close(), each returning a promise', async () => {
    const c = createInProcessClient(hsm);
    assert.deepEqual(Object.keys(c).sort(), [...HSM_OPERATIONS, 'close'].sort());
    const p = c.randomBytes(4);
    assert.ok(p instanceof Promise);
    assert.match(await p, /^[0-9A-F]{8}$/);
  });

  it('turns synchronous throws into rejections, keeping code, field and reason, adding the payShield code', async () => {
    const c = createInProcessClient(hsm);
    let thrown: unknown;
    try {
      hsm.checkValue('not a key block at all');
    } catch (e) {
      thrown = e;
    }
    const p = c.checkValue('not a key block at all');
    const e = await rejection(p);
    assert.ok(thrown instanceof PoskeyError);
    assert.deepEqual([e.code, e.field, e.reason], [thrown.code, thrown.field, thrown.reason]);
    assert.equal(payShieldCodeOf(e), payShieldCodeOf(thrown));
    assert.ok(e instanceof HsmError && e.payShield !== undefined);
  });

  it('a non-poskey failure (a bug) is POSKEY_ERR_HSM_41, as the TCP client would see it', async () => {
    hsm.bug = true;
    try {
      const e = await rejection(createInProcessClient(hsm).randomBytes(4));
      assert.ok(e instanceof HsmRemoteError);
      assert.deepEqual([e.code, e.payShield], ['POSKEY_ERR_HSM_41', '41']);
      assert.ok(e.cause instanceof TypeError);
    } finally {
      hsm.bug = false;
    }
  });

  it('object results are copies the caller may change', async () => {
    const c = createInProcessClient(hsm);
    const g = await c.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' });
    const info = await c.describeKey(g.keyBlock);
    info.kcv.value = 'changed';
    assert.notEqual((await c.describeKey(g.keyBlock)).kcv.value, 'changed');
  });

  it('fills in the default audit actor when a call names none, and keeps one that is named', async () => {
    const c = createInProcessClient(hsm, { actor: 'posp-host' });
    await c.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' });
    await c.generateKey({ keyType: 'ZPK', algorithm: 'tdes2' }, 'operator');
    assert.deepEqual(hsm.actors.slice(-2), ['posp-host', 'operator']);
  });

  it('after close(), every operation is POSKEY_ERR_HSM_CLOSED', async () => {
    const c = createInProcessClient(hsm);
    await c.close();
    for (const op of HSM_OPERATIONS) {
      const fn = c[op] as (...args: unknown[]) => Promise<unknown>;
      const e = await rejection(fn());
      assert.equal(e.code, 'POSKEY_ERR_HSM_CLOSED', op);
      assert.equal(payShieldCodeOf(e), undefined);
    }
  });

  it('refuses an object that lacks an operation (POSKEY_ERR_HSM_OPTION)', () => {
    const partial = { translatePin: () => '' } as unknown as HsmApi;
    assert.throws(
      () => createInProcessClient(partial),
      (e: unknown) => e instanceof PoskeyError && e.code === 'POSKEY_ERR_HSM_OPTION',
    );
  });
});

describe('payShieldCodeOf and withPayShieldCode', () => {
  it('reads the code an HsmError carries, maps other poskey errors, and has none for transport failures', () => {
    assert.equal(payShieldCodeOf(new HsmRemoteError('CA', '20')), '20');
    assert.equal(payShieldCodeOf(new HsmError('POSKEY_ERR_X', 'x', { payShield: '27' })), '27');
    assert.equal(payShieldCodeOf(new PoskeyError('POSKEY_ERR_PIN_LENGTH', 'x')), '24');
    assert.equal(payShieldCodeOf(new HsmError('POSKEY_ERR_HSM_TIMEOUT', 'x')), undefined);
    assert.equal(payShieldCodeOf(new Error('x')), undefined);
  });

  it('passes an HsmError with a payShield code through, wraps the rest', () => {
    const e = new HsmError('POSKEY_ERR_X', 'x', { payShield: '15' });
    assert.equal(withPayShieldCode(e), e);
    const w = withPayShieldCode(new PoskeyError('POSKEY_ERR_PAN', 'bad', { field: 'pan' }));
    assert.deepEqual([w.code, w.field, w.payShield], ['POSKEY_ERR_PAN', 'pan', '22']);
  });

  it('names an unknown payShield code as such', () => {
    assert.match(new HsmRemoteError('A0', 'QQ').message, /unknown payShield error code/);
  });
});
