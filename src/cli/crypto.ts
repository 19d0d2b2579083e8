import type { Command } from 'commander';

/** `poskey crypto …`: the payment engineer's calculator. */
export function registerCryptoCommands(_program: Command): void {}
