#!/usr/bin/env node
// The published CLI runs the compiled build; `npm install` builds it through the prepare script.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('poskey: the build is missing; run `npm run build` (or `npm install`) first\n');
  process.exit(1);
}
await import(main);
