/** The crash test shared by both dialects: SIGKILL a writer mid-stream, lose nothing it acknowledged. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import type { StoreFixture } from './helpers.js';

const CHILD = fileURLToPath(new URL('./crash-child.ts', import.meta.url));

/** Runs the child until it has acknowledged `acks` rows, kills it, returns the acknowledged ids. */
async function runAndKill(fx: StoreFixture, tid: string, acks: number): Promise<string[]> {
  const panKeyHex = Buffer.from(fx.options.panKey!).toString('hex');
  const config = JSON.stringify({ target: fx.target, schema: fx.options.schema, panKeyHex, tid });
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const ids: string[] = [];
  let stderr = '';
  let partial = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );
  child.stdout.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) if (line !== 'ready') ids.push(line);
    if (ids.length >= acks && !child.killed) child.kill('SIGKILL');
  });
  const how = await exited;
  assert.equal(how, 'SIGKILL', `the child ended on its own (${how}): ${stderr}`);
  return ids;
}

export async function crashTest(fx: StoreFixture): Promise<void> {
  const tid = `CR${randomBytes(3).toString('hex').toUpperCase()}`;
  const acknowledged = await runAndKill(fx, tid, 2000);
  assert.ok(acknowledged.length >= 2000);
  const repo = await fx.open();
  const stored = await fx.journalIds();
  const missing = acknowledged.filter((id) => !stored.has(id));
  assert.deepEqual(missing, [], `${missing.length} acknowledged rows lost`);
  // The store still works after the crash.
  const rows = await repo.journal.list({ tid, limit: 1000 });
  assert.ok(rows.length > 0);
}
