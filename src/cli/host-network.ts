/**
 * `poskey host network rekey|status`: the running host's zone keys with the card network, through
 * its admin API (like `poskey terminal add`: the HSM and the link are the running host's).
 *
 *   rekey    key exchange now (0800 70 = 101): the network delivers a new ZPK/ZAK under the ZMK,
 *            the host checks both KCVs and puts them in force; prints the new key set and KCVs
 *   status   the key set and KCVs in force, rotations, the last error, and each link's state
 */
import type { Command } from 'commander';
import { action, printJson, printResult } from './output.js';
import { type AdminOptions, adminOptions, adminRequest } from './terminal-admin.js';

interface Rotation {
  keySet: string;
  zpkKcv: string;
  zakKcv: string;
  rotatedAt: string;
}

async function rekey(o: AdminOptions): Promise<void> {
  const r = (await adminRequest(o, 'POST', 'network/rekey', {})) as Rotation;
  printResult(
    { 'key set': r.keySet, 'ZPK KCV': r.zpkKcv, 'ZAK KCV': r.zakKcv, 'rotated at': r.rotatedAt },
    o.json === true,
  );
}

interface Status {
  keys: Record<string, unknown> & { lastError?: { code: string; message: string } };
  links: {
    endpoint: string;
    stats: { state: string; connects: number };
    echoes?: { sent: number; failed: number };
  }[];
}

async function status(o: AdminOptions): Promise<void> {
  const r = (await adminRequest(o, 'GET', 'network')) as Status;
  if (o.json) return printJson(r);
  const k = r.keys;
  process.stdout.write(
    `key set ${String(k.keySet)}  ZPK KCV ${String(k.zpkKcv)}  ZAK KCV ${String(k.zakKcv)}  rotations ${String(k.rotations)}\n`,
  );
  if (k.lastError) process.stdout.write(`last error: ${k.lastError.code}: ${k.lastError.message}\n`);
  for (const l of r.links) {
    const echo = l.echoes ? `  echoes ${l.echoes.sent} (${l.echoes.failed} failed)` : '';
    process.stdout.write(`${l.endpoint}  ${l.stats.state}  connects ${l.stats.connects}${echo}\n`);
  }
}

/** Registers `poskey host network …` under `host`. */
export function registerHostNetworkCommands(host: Command): void {
  const network = host.command('network').description("the running host's link to the card network");
  adminOptions(
    network
      .command('rekey')
      .description('zone key exchange now: new ZPK and ZAK from the network, KCVs checked, then in force'),
  ).action(action(rekey));
  adminOptions(
    network.command('status').description('zone key set and KCVs in force, rotations, link states'),
  ).action(action(status));
}
