/**
 * Child process for the crash tests: opens the store named on the command line, then appends rows
 * with 64 in flight forever, printing each id on stdout only after its append resolved. The parent
 * SIGKILLs it mid-stream and checks that every printed id is in the database.
 *
 * argv[2]: JSON { target, schema?, panKeyHex, tid }
 */
import { openStore } from '../../src/store/open.js';

const { target, schema, panKeyHex, tid } = JSON.parse(process.argv[2]!) as {
  target: string;
  schema?: string;
  panKeyHex: string;
  tid: string;
};
const repo = await openStore(target, {
  panKey: Buffer.from(panKeyHex, 'hex'),
  nodeId: 'crash-child',
  schema,
});
let n = 0;

async function lane(): Promise<void> {
  for (;;) {
    const i = n++;
    const id = await repo.journal.append({
      tid,
      mid: '104110070110814',
      batch: Math.floor(i / 1_000_000),
      stan: i % 1_000_000,
      mti: '0200',
      txnType: 'purchase',
      amount: i,
      currency: '156',
    });
    // Pipes are synchronous on Linux: once write() returns, the parent can read the line.
    process.stdout.write(`${id}\n`);
  }
}

process.stdout.write('ready\n');
await Promise.all(Array.from({ length: 64 }, lane));
