/**
 * `poskey host day-end`: closes a business date and writes the reconciliation file of each
 * merchant into `<dataDir>/day-end/<date>/` (src/host/day-end.ts). Running it again for a closed
 * date writes nothing and reports the first run's files.
 */
import type { Command } from 'commander';
import { PoskeyError } from '../errors.js';
import { action, printResult } from './output.js';

interface DayEndOptions {
  config?: string;
  dataDir?: string;
  database?: string;
  panKeyFile?: string;
  date?: string;
  json?: boolean;
}

async function dayEnd(opts: DayEndOptions): Promise<void> {
  const { hostServeConfig } = await import('./host.js');
  const { parseHostConfig } = await import('../host/config.js');
  const { businessDate, businessDay, dayEndDir, runDayEnd } = await import('../host/day-end.js');
  const { openStore } = await import('../store/open.js');
  const date = opts.date ?? businessDate(Date.now());
  try {
    businessDay(date);
  } catch {
    throw new PoskeyError('POSKEY_ERR_CLI_OPTION', 'must be a calendar date YYYY-MM-DD', { field: '--date' });
  }
  const config = parseHostConfig(await hostServeConfig(opts));
  const store = await openStore(config.database ?? { dataDir: config.dataDir }, {
    ...(config.panKeyFile ? { panKeyFile: config.panKeyFile } : {}),
  });
  try {
    const r = await runDayEnd(store, { dataDir: config.dataDir, date });
    printResult(
      {
        date: r.date,
        status: r.alreadyClosed ? 'already closed' : 'closed',
        'closed at': new Date(r.closedAt).toISOString(),
        directory: dayEndDir(config.dataDir, date),
        files: r.files,
        merchants: r.merchants.map((m) => ({
          mid: m.mid,
          transactions: `${m.transactions.count} / ${m.transactions.amount}`,
          voids: `${m.voids.count} / ${m.voids.amount}`,
          refunds: `${m.refunds.count} / ${m.refunds.amount}`,
          net: m.net,
        })),
      },
      opts.json === true,
    );
  } finally {
    await store.close();
  }
}

export function registerDayEnd(host: Command): void {
  host
    .command('day-end')
    .description('close a business date: one reconciliation CSV per merchant in <data-dir>/day-end/<date>/')
    .option('--config <file>', 'JSON host config file (flags override it)')
    .option('--data-dir <dir>', 'host data directory (default ./data/host)')
    .option('--database <url>', 'postgres://… or sqlite:PATH (default SQLite in the data directory)')
    .option('--pan-key-file <file>', 'PAN hash key (hex); required with PostgreSQL')
    .option('--date <YYYY-MM-DD>', 'the business date (UTC) to close (default today)')
    .option('--json', 'print the result as one JSON object')
    .action(action(dayEnd));
}
