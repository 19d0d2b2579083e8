/**
 * `poskey terminal void|refund|preauth|preauth-void|complete|complete-advice|completion-void`: the
 * follow-up transactions of one terminal (src/terminal/terminal.ts), with the same terminal, card
 * and output options as `terminal purchase`. All but `preauth` name their original with
 * --original-stan and --original-rrn (and --original-batch, default the terminal's batch;
 * --original-date MMDD, default today), which become fields 61 and 37.
 */
import type { Command } from 'commander';
import type { OriginalRef } from '../terminal/messages.js';
import type { Terminal, TransactionResult } from '../terminal/terminal.js';
import { EXIT_FAILURE, printJson, printResult } from './output.js';
import {
  addCardOptions,
  addTerminalOptions,
  type CardOptions,
  cardOf,
  optionError,
  parseAmount,
  resultText,
  run,
  withTerminal,
} from './terminal.js';

interface FollowUpOptions extends CardOptions {
  originalStan?: string;
  originalRrn?: string;
  originalBatch?: string;
  originalDate?: string;
  originalAuthCode?: string;
}

/** 61 + 37 from the options. */
export function originalOf(opts: FollowUpOptions): OriginalRef {
  const stan = opts.originalStan ?? '';
  if (!/^\d{1,6}$/.test(stan))
    throw optionError('--original-stan', 'must be the original STAN, 1 to 6 digits');
  const rrn = opts.originalRrn ?? '';
  if (!/^[0-9A-Za-z]{12}$/.test(rrn)) throw optionError('--original-rrn', 'must be the 12-character RRN');
  const ref: OriginalRef = { stan: stan.padStart(6, '0'), rrn };
  if (opts.originalBatch !== undefined) {
    if (!/^\d{1,6}$/.test(opts.originalBatch)) throw optionError('--original-batch', 'must be 1 to 6 digits');
    ref.batch = opts.originalBatch.padStart(6, '0');
  }
  if (opts.originalDate !== undefined) {
    if (!/^(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])$/.test(opts.originalDate))
      throw optionError('--original-date', 'must be MMDD');
    ref.date = opts.originalDate;
  }
  if (opts.originalAuthCode !== undefined) {
    if (!/^[0-9A-Za-z ]{6}$/.test(opts.originalAuthCode))
      throw optionError('--original-auth-code', 'must be 6 characters');
    ref.authCode = opts.originalAuthCode;
  }
  return ref;
}

type Runner = (
  t: Terminal,
  card: ReturnType<typeof cardOf>,
  amount: number,
  opts: FollowUpOptions,
) => Promise<TransactionResult>;

interface Spec {
  name: string;
  description: string;
  original: boolean;
  run: Runner;
}

const SPECS: readonly Spec[] = [
  {
    name: 'void',
    description: 'void a purchase of this batch (0200, 200000, 60.1 = 23); --amount is the purchase amount',
    original: true,
    run: (t, c, a, o) => t.void(c, originalOf(o), a, o.pin),
  },
  {
    name: 'refund',
    description: 'refund against a sale (0220, 200000, 60.1 = 25); refunds in total at most the sale',
    original: true,
    run: (t, c, a, o) => t.refund(c, originalOf(o), a, o.pin),
  },
  {
    name: 'preauth',
    description: 'pre-authorisation (0100, 030000, 25 = 06, 60.1 = 10): a hold for --amount',
    original: false,
    run: (t, c, a, o) => t.preauth(c, a, o.pin),
  },
  {
    name: 'preauth-void',
    description: 'void a pre-authorisation (0100, 200000, 60.1 = 11): its hold is released',
    original: true,
    run: (t, c, a, o) => t.preauthVoid(c, originalOf(o), a, o.pin),
  },
  {
    name: 'complete',
    description: 'complete a pre-authorisation online (0200, 000000, 25 = 06, 60.1 = 20), at most its amount',
    original: true,
    run: (t, c, a, o) => t.complete(c, originalOf(o), a, o.pin),
  },
  {
    name: 'complete-advice',
    description: 'completion advice (0220, 000000, 25 = 06, 60.1 = 24) of a pre-authorisation',
    original: true,
    run: (t, c, a, o) => t.completeAdvice(c, originalOf(o), a),
  },
  {
    name: 'completion-void',
    description: 'void a completion of this batch (0200, 200000, 25 = 06, 60.1 = 21)',
    original: true,
    run: (t, c, a, o) => t.completionVoid(c, originalOf(o), a, o.pin),
  },
];

async function followUpCommand(spec: Spec, opts: FollowUpOptions): Promise<void> {
  const card = cardOf(opts);
  const amount = parseAmount(opts.amount ?? '');
  if (spec.original) originalOf(opts);
  await withTerminal(opts, async (t) => {
    const r = await spec.run(t, card, amount, opts);
    if (opts.json) printJson({ tid: t.config.tid, ...r });
    else printResult(resultText(r, t.config.tid), false);
    if (!r.approved) process.exitCode = EXIT_FAILURE;
  });
}

/** Registers the follow-up subcommands under `poskey terminal`. */
export function registerFollowUpCommands(terminal: Command): void {
  for (const spec of SPECS) {
    const cmd = addCardOptions(
      addTerminalOptions(terminal.command(spec.name).description(spec.description)),
    ).requiredOption('--amount <amount>', 'amount in major units, e.g. 12.34');
    if (spec.original) {
      cmd
        .requiredOption('--original-stan <stan>', "the original's STAN (61.2)")
        .requiredOption('--original-rrn <rrn>', "the original's RRN from its approval (37)")
        .option('--original-batch <batch>', "the original's batch (61.1; default the terminal's batch)")
        .option('--original-date <mmdd>', "the original's date (61.3; default today)")
        .option('--original-auth-code <code>', "the original's authorisation code (38)");
    }
    cmd.action(run((opts: FollowUpOptions) => followUpCommand(spec, opts)));
  }
}
