// First-load figures of the app at a URL: navigation timing, first contentful paint, and the
// time until the sign-in screen's heading shows, on a cold and then a warm cache.
// `node tests/firstload.mjs [URL]` (default the dev server, http://127.0.0.1:5173).
import { fileURLToPath } from 'node:url';
import { launch, VIEWPORT } from './helpers.mjs';

export async function firstLoad(browser, url) {
  const ctx = await browser.newContext({ viewport: VIEWPORT });
  const page = await ctx.newPage();
  const out = {};
  for (const run of ['cold', 'warm']) {
    const t0 = Date.now();
    await page.goto(url, { waitUntil: 'load' });
    await page.getByRole('heading', { name: 'GETLOOD' }).waitFor();
    const visible = Date.now() - t0;
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType('navigation')[0];
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      const js = performance.getEntriesByType('resource').filter((r) => r.initiatorType === 'script' || r.name.endsWith('.js') || r.name.includes('.ts') || r.name.includes('.tsx'));
      return { domContentLoadedMs: Math.round(n.domContentLoadedEventEnd), loadMs: Math.round(n.loadEventEnd), fcpMs: fcp ? Math.round(fcp.startTime) : null, scripts: js.length };
    });
    out[run] = { ...nav, signInVisibleMs: visible };
  }
  await ctx.close();
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const url = process.argv[2] ?? 'http://127.0.0.1:5173';
  const browser = await launch();
  console.log(JSON.stringify({ url, ...(await firstLoad(browser, url)) }, null, 1));
  await browser.close();
}
