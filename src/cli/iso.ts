import type { Command } from 'commander';

/** `poskey iso …`: decode and encode ISO 8583 frames. */
export function registerIsoCommands(_program: Command): void {}
