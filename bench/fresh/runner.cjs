// "Fresh process per request" baseline (bench/fri.ts): node runner.cjs <module.js> [event-json]
// Loads the module (its top-level code runs now, as on every cold start without a seed), calls
// its handler on the event (argv[3], else stdin), prints the JSON result on stdout, exits.
// CommonJS on purpose (.cjs): the example functions are CommonJS modules.
'use strict';
const file = process.argv[2];
const readEvent = () => {
  if (process.argv.length > 3) return process.argv[3];
  try { return require('node:fs').readFileSync(0, 'utf8'); } catch { return ''; }
};
(async () => {
  const mod = require(require('node:path').resolve(file));
  const raw = readEvent();
  const event = raw.trim() === '' ? {} : JSON.parse(raw);
  const context = { functionName: require('node:path').basename(file).replace(/\.[^.]*$/, ''), requestId: String(process.pid) };
  const result = await mod.handler(event, context);
  process.stdout.write(JSON.stringify(result === undefined ? null : result) + '\n');
  process.exit(0);
})().catch((e) => {
  process.stderr.write(JSON.stringify({ message: String(e && e.message || e), stack: e && e.stack }) + '\n');
  process.exit(1);
});
