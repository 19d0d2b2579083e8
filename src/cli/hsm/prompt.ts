/** Operator input for `poskey hsm`: hidden entry at a terminal, line-by-line from a pipe. */
import { createInterface, type Interface } from 'node:readline';
import { PoskeyError } from '../../errors.js';
import { action } from '../output.js';
import { ERR_ABORTED, inputError } from './common.js';

/**
 * Reads operator input. At a terminal: raw mode, nothing echoed for secrets. From a pipe: one line
 * per answer, in order, so tests and scripts can drive a ceremony.
 */
export class Prompter {
  readonly tty: boolean;
  #rl: Interface | undefined;
  #lines: AsyncIterator<string> | undefined;

  constructor(tty = process.stdin.isTTY === true) {
    this.tty = tty;
  }

  /** A secret: echo off at a terminal. */
  secret(prompt: string): Promise<string> {
    return this.#read(prompt, true);
  }

  /** A visible answer (y/n). */
  answer(prompt: string): Promise<string> {
    return this.#read(prompt, false);
  }

  /** Asks a yes/no question; anything but y/yes is no. */
  async confirm(prompt: string): Promise<boolean> {
    const a = (await this.answer(`${prompt} [y/N] `)).trim().toLowerCase();
    return a === 'y' || a === 'yes';
  }

  close(): void {
    this.#rl?.close();
    this.#rl = undefined;
    this.#lines = undefined;
  }

  async #read(prompt: string, hidden: boolean): Promise<string> {
    process.stderr.write(prompt);
    if (this.tty) return readTty(hidden);
    if (this.#lines === undefined) {
      this.#rl = createInterface({
        input: process.stdin,
        crlfDelay: Number.POSITIVE_INFINITY,
        terminal: false,
      });
      this.#lines = this.#rl[Symbol.asyncIterator]();
    }
    const next = await this.#lines.next();
    if (next.done) {
      process.stderr.write('\n');
      throw inputError('input ended before every answer was given', 'stdin');
    }
    if (!hidden) process.stderr.write('\n');
    else process.stderr.write('(read)\n');
    return next.value;
  }
}

/** One line from the terminal in raw mode; secrets show nothing, not even asterisks. */
function readTty(hidden: boolean): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolveLine, reject) => {
    let text = '';
    const finish = (err?: PoskeyError) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolveLine(text);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || ch === '\u0004') {
          return finish(new PoskeyError(ERR_ABORTED, 'interrupted at the prompt', { field: 'stdin' }));
        }
        if (ch === '\u007f' || ch === '\b') {
          if (text.length > 0 && !hidden) process.stderr.write('\b \b');
          text = text.slice(0, -1);
        } else if (ch === '\u0015') {
          text = '';
        } else if (ch >= ' ') {
          text += ch;
          if (!hidden) process.stderr.write(ch);
        }
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** Wraps a command action with a Prompter that is closed however the action ends. */
export function withPrompter<A extends unknown[]>(fn: (p: Prompter, ...args: A) => Promise<void>) {
  return action(async (...args: A) => {
    const p = new Prompter();
    try {
      await fn(p, ...args);
    } finally {
      p.close();
    }
  });
}
