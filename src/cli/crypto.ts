/**
 * `poskey crypto …`: the payment engineer's calculator. Every subcommand is generated from the
 * operation table (src/cli/crypto/table.ts), and so is `batch`, so a flag and its batch key
 * cannot drift apart. Hex goes in on flags; output is readable text, or exactly one JSON object
 * on one line with --json.
 */
import { createInterface } from 'node:readline';
import { type Command, Option } from 'commander';
import { runBatch } from './crypto/batch.js';
import { flagOf, kebab, type Operation, type OptionSpec, runOperation } from './crypto/schema.js';
import { GROUPS, OPERATIONS, OPERATIONS_BY_PATH } from './crypto/table.js';
import { action, EXIT_FAILURE, printResult } from './output.js';

/** A usage error reported by commander itself (unknown flag, missing flag value, unknown subcommand). */
export const ERR_USAGE = 'POSKEY_ERR_CLI_USAGE';

/** Short enums are shown in the value name (`<ecb|cbc>`); long ones are listed in the description. */
function listable(spec: OptionSpec): boolean {
  return spec.type === 'enum' && spec.values.join('|').length <= 24;
}

function valueName(name: string, spec: OptionSpec): string {
  switch (spec.type) {
    case 'hex':
      return 'hex';
    case 'enum':
      return listable(spec) ? spec.values.join('|') : name;
    case 'int':
      return 'n';
    case 'text':
      return spec.valueName;
    case 'flag':
      return '';
  }
}

function describeOption(spec: OptionSpec): string {
  const notes = [spec.required ? 'required' : '', spec.repeated ? 'repeatable' : ''];
  if (spec.type === 'enum' && !listable(spec)) notes.push(`one of ${spec.values.join(', ')}`);
  if (spec.type === 'enum' && spec.default !== undefined) notes.push(`default ${spec.default}`);
  if (spec.type === 'int') notes.push(`${spec.min}..${spec.max}`);
  const extra = notes.filter(Boolean).join(', ');
  return extra ? `${spec.description} (${extra})` : spec.description;
}

function addOption(cmd: Command, name: string, spec: OptionSpec): void {
  const value = valueName(kebab(name), spec);
  const option = new Option(value ? `${flagOf(name)} <${value}>` : flagOf(name), describeOption(spec));
  // Values stay raw strings here: runOperation validates them exactly as it does batch values.
  if (spec.repeated) option.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
  cmd.addOption(option);
}

function addOperation(parent: Command, name: string, op: Operation): void {
  const cmd = parent.command(name).description(op.summary);
  for (const [key, spec] of Object.entries(op.options)) addOption(cmd, key, spec);
  cmd.option('--json', 'print exactly one JSON object on one line');
  cmd.addHelpText('after', `\nExample:\n  $ poskey crypto ${op.example}\n`);
  cmd.action(
    action((opts: Record<string, unknown>) => {
      const { json, ...raw } = opts;
      const result = runOperation(op, raw);
      if (json === true) printResult(result, true);
      else printResult(op.text?.(result) ?? result, false);
    }),
  );
}

function addBatch(crypto: Command): void {
  crypto
    .command('batch')
    .description('run operations from JSON Lines on stdin, one JSON result per line on stdout, in order')
    .addHelpText(
      'after',
      `
Each line is {"op": "<subcommand path>", "<optionInCamelCase>": value, …}, e.g.
  {"op":"kcv","alg":"tdes","key":"0123456789ABCDEFFEDCBA9876543210"}
A repeated flag takes an array; an optional "id" is echoed back. A failing line prints
{"error":{"code":…,"message":…}} and the batch goes on; the exit code is then ${EXIT_FAILURE}.
Operations: ${[...OPERATIONS_BY_PATH.keys()].join(', ')}
`,
    )
    .action(
      action(async () => {
        const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
        const { failed } = await runBatch(lines, OPERATIONS_BY_PATH, writeLine);
        if (failed > 0) process.exitCode = EXIT_FAILURE;
      }),
    );
}

/** Writes one line to stdout, waiting when the pipe is full so a large batch does not pile up in memory. */
function writeLine(line: string): Promise<void> | undefined {
  if (process.stdout.write(`${line}\n`)) return undefined;
  return new Promise((resolve) => process.stdout.once('drain', resolve));
}

/** Registers `poskey crypto` and its subcommands on `program`. */
export function registerCryptoCommands(program: Command): void {
  const crypto = program
    .command('crypto')
    .description('payment crypto calculator: KCV, ciphers, PIN blocks, MACs, TR-31, DUKPT, key components')
    .showHelpAfterError(false)
    .configureOutput({
      // Commander's own usage errors, as one line in the same shape as every other poskey error.
      outputError: (message, write) =>
        write(
          `poskey: ${ERR_USAGE}: ${message
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()}\n`,
        ),
    });
  const groups = new Map<string, Command>();
  for (const op of OPERATIONS) {
    const words = op.path.split(' ');
    let parent = crypto;
    for (const [i, word] of words.slice(0, -1).entries()) {
      const key = words.slice(0, i + 1).join(' ');
      let group = groups.get(key);
      if (group === undefined) {
        group = parent.command(word).description(GROUPS[key] ?? `${word} operations`);
        groups.set(key, group);
      }
      parent = group;
    }
    addOperation(parent, words.at(-1)!, op);
  }
  addBatch(crypto);
}
