// Builds dist/verify.html: one self-contained page, the bundle and the style inlined, a Content-Security-Policy
// that lets only that script and that style run and allows no network request (default-src 'none').
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist', 'verify.html');

const result = await build({
  entryPoints: [join(here, 'src', 'main.js')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['chrome111', 'firefox115', 'safari16'],
  minify: true,
  legalComments: 'none',
  write: false,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"', 'process.env.DEBUG': 'undefined' },
});
// Inside an inline <script>, "</script" would end it early.
const script = result.outputFiles[0].text.replace(/<\/(script)/gi, '<\\/$1');
const style = readFileSync(join(here, 'src', 'style.css'), 'utf8');
const digest = (text) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;
const csp = ["default-src 'none'", `script-src ${digest(script)}`, `style-src ${digest(style)}`, "img-src 'none'",
  "connect-src 'none'", "base-uri 'none'", "form-action 'none'"].join('; ');
const page = readFileSync(join(here, 'src', 'page.html'), 'utf8')
  .replace('__CSP__', csp)
  .replace('__STYLE__', () => style)
  .replace('__SCRIPT__', () => script);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, page);
console.log(`wrote ${out} (${page.length} bytes)`);
