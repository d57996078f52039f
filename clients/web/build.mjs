// Builds dist/, which is committed and embedded in the huddle binary (src/http/web.rs):
//   dist/index.html, style.css, favicon.svg   from static/
//   dist/app.js                               src/ bundled and minified by esbuild
//   dist/THIRD-PARTY-LICENSES.txt             the licences of the packages bundled into app.js
//   dist/docs/                                the API docs page: docs/ and Swagger UI (swagger-ui-dist)
//
// Deterministic: the same sources and lockfile give byte-identical files (no timestamps, no
// absolute paths, sorted listings), because CI rebuilds dist/ and fails on any difference.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
process.chdir(here);
const dist = 'dist';

// Start from nothing, so a file removed from the sources is removed from dist/ too.
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, 'docs'), { recursive: true });

const result = await build({
  entryPoints: ['src/main.ts'],
  outfile: join(dist, 'app.js'),
  bundle: true,
  minify: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  charset: 'utf8',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

// The licences of what went into app.js (legalComments are dropped above, in favour of this).
const packages = new Map();
for (const input of Object.keys(result.metafile.inputs)) {
  const m = input.match(/^(?:.*\/)?node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (m) packages.set(m[1], input.slice(0, input.indexOf(m[1]) + m[1].length));
}
let licences = 'Third-party software bundled into app.js, with its licence.\n';
for (const name of [...packages.keys()].sort()) {
  const dir = packages.get(name);
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const file = readdirSync(dir).sort().find((f) => /^licen[cs]e/i.test(f));
  licences += `\n${'='.repeat(78)}\n${pkg.name} ${pkg.version} (${pkg.license})\n${'='.repeat(78)}\n\n`;
  licences += file ? readFileSync(join(dir, file), 'utf8').trim() + '\n' : `${pkg.license}\n`;
}
writeFileSync(join(dist, 'THIRD-PARTY-LICENSES.txt'), licences);

for (const file of readdirSync('static').sort()) copyFileSync(join('static', file), join(dist, file));
for (const file of readdirSync('docs').sort()) copyFileSync(join('docs', file), join(dist, 'docs', file));

// Swagger UI, vendored so /docs works offline. Its source map comments are dropped: the maps
// are not shipped, and browsers would ask for them.
const swagger = 'node_modules/swagger-ui-dist';
const noMap = (text) => text.replace(/\n?\/[/*][#@] sourceMappingURL=\S+(?: \*\/)?\s*$/, '\n');
for (const file of ['swagger-ui-bundle.js', 'swagger-ui.css']) {
  writeFileSync(join(dist, 'docs', file), noMap(readFileSync(join(swagger, file), 'utf8')));
}
copyFileSync(join(swagger, 'LICENSE'), join(dist, 'docs', 'SWAGGER-UI-LICENSE.txt'));
if (readdirSync(swagger).includes('NOTICE')) copyFileSync(join(swagger, 'NOTICE'), join(dist, 'docs', 'SWAGGER-UI-NOTICE.txt'));

const app = readFileSync(join(dist, 'app.js'));
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`dist/app.js: ${app.length} bytes (${kib(app.length)}), ${gzipSync(app, { level: 9 }).length} gzipped`);
