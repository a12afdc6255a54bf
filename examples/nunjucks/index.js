// spore package example (Node): deploy the directory examples/nunjucks with handler `index.handler`.
// Its dependencies are installed by scripts/example-deps.sh (`npm ci --omit=dev`).
'use strict';
const path = require('path');
const nunjucks = require('nunjucks');

// Init code (runs once, in the seed): loader relative to this file, templates cached and
// compiled now, so the handler only renders.
const env = new nunjucks.Environment(
  new nunjucks.FileSystemLoader(path.join(__dirname, 'templates'), { noCache: false, watch: false }),
  { autoescape: true, throwOnUndefined: false },
);
const page = env.getTemplate('page.njk', true); // eagerCompile

module.exports.handler = async (event, context) => {
  const html = page.render({
    title: String(event?.title ?? 'untitled'),
    items: Array.isArray(event?.items) ? event.items.map(String) : [],
    functionName: context?.functionName ?? '',
  });
  return { html };
};
