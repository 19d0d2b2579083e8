/**
 * `npm run bench -- <suite> [suite …]`: runs the named benchmark suites (all when none is named).
 * Each suite is bench/<name>.ts exporting `run()`.
 */
const SUITES = ['crypto', 'iso8583', 'hsm', 'store', 'e2e'] as const;

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !(SUITES as readonly string[]).includes(w));
if (unknown.length) {
  console.error(`unknown benchmark suite(s): ${unknown.join(', ')}; known: ${SUITES.join(', ')}`);
  process.exit(2);
}
for (const name of wanted.length ? wanted : SUITES) {
  const suite = (await import(`./${name}.js`)) as { run: () => Promise<void> | void };
  await suite.run();
}
