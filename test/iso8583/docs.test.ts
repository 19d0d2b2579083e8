import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type FieldSpec, fieldToJSON, getDialect, IsoErrorCode } from '../../src/iso8583/index.js';

const doc = readFileSync(new URL('../../docs/iso8583.md', import.meta.url), 'utf8');

function row(label: string, n: string, f: FieldSpec): string {
  const j = fieldToJSON(f);
  const subs = j.subfields
    ? j.subfields.map((s) => `${n}.${s.id} ${s.variable ? '..' : ''}${s.length}`).join(', ')
    : j.tlv
      ? 'BER-TLV'
      : '';
  return `| ${label} | ${j.desc} | ${j.length} | ${j.enc} | ${j.prefix} | ${subs} |`;
}

describe('docs/iso8583.md stays in sync with the code', () => {
  it('lists every error code', () => {
    for (const code of Object.values(IsoErrorCode)) assert.ok(doc.includes(`\`${code}\``), code);
  });

  for (const name of ['unionpay-pos', 'network']) {
    it(`has the ${name} table row for every field and override`, () => {
      const d = getDialect(name);
      const rows = [row('MTI', 'MTI', d.mti)];
      for (const [k, f] of Object.entries(d.fields)) rows.push(row(k, k, f));
      for (const [m, o] of Object.entries(d.overrides))
        for (const [k, f] of Object.entries(o)) rows.push(row(`${k} in ${m}`, k, f));
      for (const r of rows) assert.ok(doc.includes(r), `missing or stale row: ${r}`);
    });
  }
});
