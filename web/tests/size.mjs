// The first screen's JavaScript: what web/dist/index.html loads before any window opens
// (its module script and modulepreloads), gzipped. `npm run size` fails above the budget.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { WEB } from './platform.mjs';

export const BUDGET_GZIP = 350 * 1024;

export function firstScreen() {
  const dist = join(WEB, 'dist');
  const html = readFileSync(join(dist, 'index.html'), 'utf8');
  const files = [...html.matchAll(/<(?:script[^>]*\ssrc|link[^>]*rel="modulepreload"[^>]*\shref)="([^"]+\.js)"/g)].map((m) => m[1]);
  let raw = 0;
  let gzip = 0;
  for (const f of files) {
    const body = readFileSync(join(dist, f.replace(/^\//, '')));
    raw += body.length;
    gzip += gzipSync(body, { level: 9 }).length;
  }
  // Inline scripts would need 'unsafe-inline' under the gateway's CSP.
  const inline = [...html.matchAll(/<script(?![^>]*\ssrc=)[^>]*>/g)].length + [...html.matchAll(/\sstyle="/g)].length;
  return { files, raw, gzip, inline };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const s = firstScreen();
  console.log(`first-screen JS: ${s.files.join(', ')}: ${(s.raw / 1024).toFixed(1)} KB raw, ${(s.gzip / 1024).toFixed(1)} KB gzipped (budget ${BUDGET_GZIP / 1024} KB); inline scripts/styles in index.html: ${s.inline}`);
  const ok = s.gzip <= BUDGET_GZIP && s.inline === 0;
  console.log(ok ? '1 passed, 0 failed' : '0 passed, 1 failed');
  process.exit(ok ? 0 : 1);
}
