/**
 * Shared CLI plumbing: every command prints readable text, or exactly one JSON object with --json,
 * and turns any failure into one line on stderr with a non-zero exit and no stack trace.
 */
import { type Command, CommanderError } from 'commander';
import { PoskeyError } from '../errors.js';

/** Exit codes: 1 for a failed operation, 2 for bad usage or bad input. */
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Prints `value` as JSON when --json is set, else as aligned `key: value` lines (nested objects indented). */
export function printResult(value: Record<string, unknown>, json: boolean): void {
  if (json) {
    printJson(value);
    return;
  }
  process.stdout.write(`${formatText(value, '')}\n`);
}

function formatText(value: Record<string, unknown>, indent: string): string {
  const width = Math.max(0, ...Object.keys(value).map((k) => k.length));
  return Object.entries(value)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
        return `${indent}${k}:\n${formatText(v as Record<string, unknown>, `${indent}  `)}`;
      }
      if (Array.isArray(v) && v.some((x) => x !== null && typeof x === 'object')) {
        const items = v.map((x, i) =>
          x !== null && typeof x === 'object'
            ? `${indent}  [${i}]\n${formatText(x as Record<string, unknown>, `${indent}    `)}`
            : `${indent}  [${i}] ${String(x)}`,
        );
        return `${indent}${k}:\n${items.join('\n')}`;
      }
      const shown = Array.isArray(v) ? v.join(', ') : String(v);
      return `${indent}${`${k}:`.padEnd(width + 1)} ${shown}`;
    })
    .join('\n');
}

/** One line for stderr: the stable code when there is one, then the message. */
export function describeError(e: unknown): string {
  if (e instanceof PoskeyError) return `${e.code}: ${e.message}`;
  if (e instanceof Error) return e.message;
  return String(e);
}

/**
 * Wraps a command action so thrown errors become `poskey: CODE: message` on stderr and exit code 2
 * (bad input) or 1 (anything else), never a stack trace.
 */
export function action<A extends unknown[]>(
  fn: (...args: A) => unknown | Promise<unknown>,
): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      process.stderr.write(`poskey: ${describeError(e)}\n`);
      process.exitCode = e instanceof PoskeyError ? EXIT_USAGE : EXIT_FAILURE;
    }
  };
}

/** Makes commander report usage errors as one line and exit 2 instead of throwing. */
export function configureErrors(cmd: Command): Command {
  return cmd.exitOverride((err: CommanderError) => {
    if (
      err.code === 'commander.helpDisplayed' ||
      err.code === 'commander.version' ||
      err.code === 'commander.help'
    ) {
      process.exit(0);
    }
    process.exit(EXIT_USAGE);
  });
}
export { CommanderError };
