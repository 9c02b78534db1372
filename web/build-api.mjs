// Builds dist/api.html: the intake API's HTML reference, rendered in the browser by Redoc's standalone bundle
// from docs/openapi.json (the contract `anchorpipe openapi --check` holds to the code), everything inlined.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const spec = readFileSync(join(here, '..', 'docs', 'openapi.json'), 'utf8');
const redoc = readFileSync(require.resolve('redoc/bundles/redoc.standalone.js'), 'utf8');
const inline = (text) => text.replace(/<\/(script)/gi, '<\\/$1');
const page = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${JSON.parse(spec).info.title} — API reference</title></head>
<body><div id="redoc"></div>
<script>${inline(redoc)}</script>
<script>Redoc.init(${inline(spec)}, {hideDownloadButton: false, disableSearch: true}, document.getElementById('redoc'));</script>
</body></html>
`;
const out = join(here, 'dist', 'api.html');
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, page);
console.log(`wrote ${out} (${page.length} bytes)`);
