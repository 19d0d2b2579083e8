import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classify, getDialect, type IsoMessage } from '../../src/iso8583/index.js';

const pos = getDialect('unionpay-pos');
const net = getDialect('network');

const fin = (mti: string, f3: string, f25: string, f60_1: string): IsoMessage => ({
  0: mti,
  3: f3,
  25: f25,
  60: { 1: f60_1, 2: '000001', 3: '000' },
});
const mgmt = (mti: string, code: string): IsoMessage => ({ 0: mti, 60: { 1: '00', 2: '000001', 3: code } });

describe('catalogue: unionpay-pos (research §1.6)', () => {
  const rows: [string, IsoMessage, string, string][] = [
    ['balance inquiry', fin('0200', '310000', '00', '01'), 'balance', '0200310001'],
    ['purchase', fin('0200', '000000', '00', '22'), 'purchase', '0200000022'],
    ['void', fin('0200', '200000', '00', '23'), 'void', '0200200023'],
    ['refund', fin('0220', '200000', '00', '25'), 'refund', '0220200025'],
    ['pre-auth', fin('0100', '030000', '06', '10'), 'preauth', '0100030610'],
    ['pre-auth void', fin('0100', '200000', '06', '11'), 'preauth-void', '0100200611'],
    ['completion', fin('0200', '000000', '06', '20'), 'completion', '0200000620'],
    ['completion advice', fin('0220', '000000', '06', '24'), 'completion-advice', '0220000624'],
    ['completion void', fin('0200', '200000', '06', '21'), 'completion-void', '0200200621'],
    ['offline purchase upload', fin('0200', '000000', '00', '36'), 'offline-purchase', '0200000036'],
    ['sign-in 001', mgmt('0800', '001'), 'sign-in', '0800001'],
    ['sign-in 003', mgmt('0800', '003'), 'sign-in', '0800003'],
    ['sign-in 004', mgmt('0800', '004'), 'sign-in', '0800004'],
    ['sign-in 006 (SM4)', mgmt('0800', '006'), 'sign-in', '0800006'],
    ['sign-off', mgmt('0820', '002'), 'sign-off', '0820002'],
    ['echo test', mgmt('0820', '301'), 'echo', '0820301'],
    ['parameter download', mgmt('0800', '360'), 'parameter-download', '0800360'],
    ['IC public key download', mgmt('0800', '370'), 'ic-key-download', '0800370'],
    ['IC public key download end', mgmt('0800', '371'), 'ic-key-download-end', '0800371'],
    ['IC parameter download', mgmt('0800', '380'), 'ic-param-download', '0800380'],
    ['IC parameter download end', mgmt('0800', '381'), 'ic-param-download-end', '0800381'],
    ['blacklist', mgmt('0800', '390'), 'blacklist-download', '0800390'],
    ['blacklist end', mgmt('0800', '391'), 'blacklist-download-end', '0800391'],
    ['contactless parameters', mgmt('0800', '394'), 'contactless-param-download', '0800394'],
    ['contactless parameters end', mgmt('0800', '395'), 'contactless-param-download-end', '0800395'],
    ['download status report (keys)', mgmt('0820', '372'), 'download-status-report', '0820372'],
    ['download status report (params)', mgmt('0820', '382'), 'download-status-report', '0820382'],
    ['IC script result advice', mgmt('0620', '951'), 'script-advice', '0620951'],
    ['settlement', mgmt('0500', '201'), 'settlement', '0500201'],
    ['batch upload detail', mgmt('0320', '201'), 'batch-upload', '0320201'],
    ['unknown management code', mgmt('0800', '999'), 'unknown', '0800000'],
    ['unknown financial', fin('0200', '000000', '00', '99'), 'unknown', '0200000099'],
  ];
  for (const [what, msg, name, key] of rows) {
    it(`${what} → ${name}`, () => {
      const c = classify(pos, msg);
      assert.equal(c.name, name);
      assert.equal(c.direction, 'request');
      if (name !== 'unknown' || key.length > 7) assert.equal(c.key, key);
    });
  }

  it('responses classify by the request MTI they answer', () => {
    const c = classify(pos, { ...fin('0210', '000000', '00', '22') });
    assert.deepStrictEqual(c, {
      name: 'purchase',
      direction: 'response',
      requestMti: '0200',
      key: '0200000022',
    });
    assert.equal(classify(pos, mgmt('0830', '002')).name, 'sign-off');
    assert.equal(classify(pos, mgmt('0510', '201')).direction, 'response');
  });

  it('a response without F25 still classifies on 60.1', () => {
    const m: IsoMessage = { 0: '0210', 3: '310000', 60: { 1: '01', 2: '000001', 3: '000' } };
    assert.equal(classify(pos, m).name, 'balance');
  });

  it('sign-in variants and batch-upload stages', () => {
    assert.equal(classify(pos, mgmt('0800', '004')).variant, 'double-length keys with TDK');
    assert.equal(classify(pos, mgmt('0800', '006')).variant, 'SM4 keys');
    assert.equal(classify(pos, mgmt('0320', '203')).variant, 'detail');
    assert.equal(classify(pos, mgmt('0320', '202')).variant, 'end');
    assert.equal(classify(pos, mgmt('0330', '207')).variant, 'end');
  });

  it('reversals name what they reverse', () => {
    const rev = (f3: string, f25: string, f60_1: string) => classify(pos, fin('0400', f3, f25, f60_1));
    assert.deepStrictEqual(rev('000000', '00', '22'), {
      name: 'reversal',
      direction: 'request',
      requestMti: '0400',
      key: '0400000022',
      reverses: 'purchase',
    });
    assert.equal(rev('200000', '00', '23').reverses, 'void');
    assert.equal(rev('030000', '06', '10').reverses, 'preauth');
    assert.equal(rev('000000', '06', '20').reverses, 'completion');
    assert.equal(rev('200000', '00', '25').reverses, 'refund');
    assert.equal(rev('000000', '00', '77').reverses, undefined);
    assert.equal(classify(pos, fin('0410', '000000', '00', '22')).direction, 'response');
    assert.equal(classify(pos, fin('0420', '000000', '00', '22')).name, 'reversal-advice');
  });

  it('a message without a usable MTI is unknown, never a throw', () => {
    assert.equal(classify(pos, {} as IsoMessage).name, 'unknown');
    assert.equal(classify(pos, { 0: '0200' }).name, 'unknown');
  });
});

describe('catalogue: network (ISO 8583:1987)', () => {
  const rows: [IsoMessage, string, string][] = [
    [{ 0: '0100', 3: '030000', 25: '06' }, 'preauth', 'request'],
    [{ 0: '0110', 3: '200000', 25: '06' }, 'preauth-void', 'response'],
    [{ 0: '0100', 3: '310000' }, 'balance', 'request'],
    [{ 0: '0100', 3: '000000' }, 'authorization', 'request'],
    [{ 0: '0200', 3: '000000', 25: '00' }, 'purchase', 'request'],
    [{ 0: '0210', 3: '000000' }, 'purchase', 'response'],
    [{ 0: '0200', 3: '200000', 25: '00' }, 'void', 'request'],
    [{ 0: '0200', 3: '310000', 25: '00' }, 'balance', 'request'],
    [{ 0: '0200', 3: '000000', 25: '06' }, 'completion', 'request'],
    [{ 0: '0200', 3: '200000', 25: '06' }, 'completion-void', 'request'],
    [{ 0: '0220', 3: '200000', 25: '00' }, 'refund', 'request'],
    [{ 0: '0220', 3: '000000', 25: '06' }, 'completion-advice', 'request'],
    [{ 0: '0400', 3: '000000', 25: '00' }, 'reversal', 'request'],
    [{ 0: '0410', 3: '000000', 25: '00' }, 'reversal', 'response'],
    [{ 0: '0420', 3: '000000', 25: '00' }, 'reversal-advice', 'request'],
    [{ 0: '0430', 3: '000000', 25: '00' }, 'reversal-advice', 'response'],
    [{ 0: '0500' }, 'settlement', 'request'],
    [{ 0: '0800', 70: '001' }, 'sign-on', 'request'],
    [{ 0: '0810', 70: '002' }, 'sign-off', 'response'],
    [{ 0: '0800', 70: '101' }, 'key-exchange', 'request'],
    [{ 0: '0800', 70: '161' }, 'key-exchange', 'request'],
    [{ 0: '0800', 70: '301' }, 'echo', 'request'],
    [{ 0: '0820', 70: '301' }, 'echo', 'request'],
    [{ 0: '0800', 70: '999' }, 'unknown', 'request'],
    [{ 0: '0600' }, 'unknown', 'request'],
  ];
  for (const [msg, name, direction] of rows) {
    it(`${msg[0]} ${msg[3] ?? ''}${msg[25] ?? ''}${msg[70] ?? ''} → ${name}`, () => {
      const c = classify(net, msg);
      assert.equal(c.name, name);
      assert.equal(c.direction, direction);
    });
  }

  it('reversals name what they reverse; keys use F70 for management', () => {
    assert.equal(classify(net, { 0: '0400', 3: '000000', 25: '00' }).reverses, 'purchase');
    assert.equal(classify(net, { 0: '0400', 3: '030000', 25: '06' }).reverses, 'preauth');
    assert.equal(classify(net, { 0: '0800', 70: '301' }).key, '0800301');
    assert.equal(classify(net, { 0: '0200', 3: '000000', 25: '00' }).key, '02000000');
  });
});
