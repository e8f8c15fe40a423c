/**
 * Runs `warren relay …` or `warren expose …` through the exported command
 * functions, as src/cli/warren.ts will dispatch them (for relay-cli.test.ts).
 */
import { exposeCommand } from '../../src/cli/expose.js';
import { relayCommand } from '../../src/cli/relay.js';

const [command, ...args] = process.argv.slice(2);
if (command === 'relay') process.exitCode = await relayCommand(args);
else if (command === 'expose') process.exitCode = await exposeCommand(args);
else {
  process.stderr.write(`cli-runner: unknown command '${command ?? ''}'\n`);
  process.exitCode = 2;
}
