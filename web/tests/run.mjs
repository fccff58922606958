#!/usr/bin/env node
// The browser tests: Playwright (npm playwright-core) driving Debian's Chromium, against a
// running gateway (GETLOOD_URL) or `getlood dev` started here. `node tests/run.mjs [spec...]`.
// Prints each step, the figures (first load, first-screen JS) and `N passed, N failed`.
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { app, gateway, WEB } from './platform.mjs';
import { launch } from './helpers.mjs';
import { firstScreen } from './size.mjs';
import { firstLoad } from './firstload.mjs';
import * as chat from './chat-to-dashboard.spec.mjs';
import * as workflow from './workflow.spec.mjs';
import * as consoleSpec from './console.spec.mjs';
import * as desktop from './desktop.spec.mjs';
import * as oidc from './oidc.spec.mjs';

const SPECS = [chat, desktop, workflow, consoleSpec, oidc];
const wanted = process.argv.slice(2);
const specs = wanted.length ? SPECS.filter((s) => wanted.includes(s.name) || s === chat) : SPECS;

const results = [];
const figures = {};
let browser;
try {
  const gw = await gateway();
  const site = await app(gw.url);
  console.log(`e2e: gateway ${gw.url}${gw.started ? ' (getlood dev started here)' : ''}, app ${site.url} (${site.servedBy})`);
  browser = await launch();
  console.log(`e2e: ${browser.version()} (${process.env.CHROMIUM ?? '/usr/bin/chromium'})`);
  figures.firstScreen = firstScreen();
  figures.firstLoad = await firstLoad(browser, site.url);
  console.log(`e2e: first-screen JS ${(figures.firstScreen.gzip / 1024).toFixed(1)} KB gzipped (${(figures.firstScreen.raw / 1024).toFixed(1)} KB raw, ${figures.firstScreen.files.length} file(s))`);
  console.log(`e2e: first load ${JSON.stringify(figures.firstLoad)}`);
  const shared = {};
  for (const spec of specs) {
    const t = Date.now();
    const log = (m) => console.log(`  ${spec.name}: ${m}`);
    try {
      await spec.run({ browser, appUrl: site.url, shared, log });
      results.push({ name: spec.name, ok: true, ms: Date.now() - t });
      console.log(`ok ${spec.name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
    } catch (e) {
      results.push({ name: spec.name, ok: false, ms: Date.now() - t, error: String(e?.stack ?? e) });
      console.log(`FAILED ${spec.name} (${((Date.now() - t) / 1000).toFixed(1)} s): ${e?.stack ?? e}`);
      if (spec === chat) break; // the others need its signed-in tenant
    }
  }
} catch (e) {
  console.log(`e2e: could not run: ${e?.stack ?? e}`);
  results.push({ name: 'setup', ok: false, error: String(e) });
} finally {
  await browser?.close();
}
mkdirSync(join(WEB, 'test-results'), { recursive: true });
writeFileSync(join(WEB, 'test-results/e2e.json'), JSON.stringify({ results, figures }, null, 2));
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed + Math.max(0, specs.length - results.length);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
