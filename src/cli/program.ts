import { Command } from 'commander';
import { registerCaCommands } from './ca.js';
import { registerCryptoCommands } from './crypto.js';
import { registerHostCommands } from './host.js';
import { registerHsmCommands } from './hsm.js';
import { registerIsoCommands } from './iso.js';
import { registerNetworkCommands } from './network.js';
import { configureErrors } from './output.js';
import { registerTerminalCommands } from './terminal.js';

export const VERSION = '0.1.0';

/** Builds the `poskey` command tree; each area registers its own subcommands. */
export function buildProgram(): Command {
  const program = configureErrors(
    new Command('poskey')
      .description('POS key management, PIN and MAC protection, software payment HSM and POSP host')
      .version(VERSION)
      .showHelpAfterError('(run with --help for usage)'),
  );
  program
    .command('start')
    .description('run the platform on embedded defaults (until the host exists, shows this help)')
    .action(() => {
      process.stdout.write(
        'poskey: the host, HSM and network services are not built yet; available commands:\n\n',
      );
      program.outputHelp();
    });
  registerCryptoCommands(program);
  registerIsoCommands(program);
  registerHsmCommands(program);
  registerCaCommands(program);
  registerNetworkCommands(program);
  registerTerminalCommands(program);
  registerHostCommands(program);
  return program;
}
