import { Command } from 'commander';
import { registerCaCommands } from './ca.js';
import { registerCryptoCommands } from './crypto.js';
import { registerHostCommands } from './host.js';
import { registerHsmCommands } from './hsm.js';
import { registerIsoCommands } from './iso.js';
import { registerKeyloadCommands } from './keyload.js';
import { registerNetworkCommands } from './network.js';
import { configureErrors } from './output.js';
import { registerStartCommands } from './start.js';
import { registerTerminalCommands } from './terminal.js';
import { registerTerminalAdminCommands } from './terminal-admin.js';

export const VERSION = '0.1.0';

/** Builds the `poskey` command tree; each area registers its own subcommands. */
export function buildProgram(): Command {
  const program = configureErrors(
    new Command('poskey')
      .description('POS key management, PIN and MAC protection, software payment HSM and POSP host')
      .version(VERSION)
      .showHelpAfterError('(run with --help for usage)'),
  );
  registerStartCommands(program);
  registerCryptoCommands(program);
  registerIsoCommands(program);
  registerHsmCommands(program);
  registerCaCommands(program);
  registerHostCommands(program);
  registerTerminalCommands(program);
  registerTerminalAdminCommands(program);
  registerNetworkCommands(program);
  registerKeyloadCommands(program);
  return program;
}
