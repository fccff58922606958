// What the specs share: the browser, signing in, the tenant's setup through the API, checks.
import { readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { devToken, WEB } from './platform.mjs';

const require = createRequire(import.meta.url);
export const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const SHOTS = join(WEB, 'screenshots');
mkdirSync(SHOTS, { recursive: true });

export const VIEWPORT = { width: 1280, height: 800 };
export const RUN_ID = process.env.E2E_RUN_ID ?? Date.now().toString(36);

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
  });
}

export function expect(cond, message) {
  if (!cond) throw new Error(message);
}

/** A page that records CSP violations and uncaught errors, which fail the spec at its end. */
export async function newPage(context) {
  const page = await context.newPage();
  page.problems = [];
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      (window.__csp ??= []).push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
  return page;
}

export async function checkPage(page) {
  const csp = await page.evaluate(() => window.__csp ?? []).catch(() => []);
  const all = [...page.problems, ...csp.map((c) => `CSP violation: ${c}`)];
  if (all.length) throw new Error(all.join('\n'));
}

export async function authConfig(appUrl) {
  const r = await fetch(`${appUrl}/api/v1/auth/config`);
  return r.ok ? r.json() : null;
}

/**
 * Signs `page` in as a fresh user of a fresh tenant: through the sign-up form when the gateway
 * has built-in accounts, else (before it has them) with a development token put where the app
 * keeps its session. Returns { token, tenant, user }.
 */
export async function signIn(page, appUrl, { tenant = `e2e${RUN_ID}`, user = 'owner', screenshot } = {}) {
  const cfg = await authConfig(appUrl);
  await page.goto(appUrl);
  if (cfg?.mode === 'builtin') {
    await page.getByTestId('login').waitFor();
    if (screenshot) {
      await page.screenshot({ path: join(SHOTS, screenshot) });
      await axe(page, 'sign-in');
    }
    await page.getByTestId('tab-signup').click();
    await page.getByTestId('email').fill(`${user}-${tenant}@example.com`);
    await page.getByTestId('password').fill('correct horse battery staple');
    await page.getByTestId('tenant').fill(tenant);
    await page.getByTestId('login').click();
    await page.getByTestId('desktop').waitFor({ timeout: 30_000 });
    const s = await page.evaluate(() => JSON.parse(localStorage.getItem('getlood.session')));
    return { token: s.token, tenant, user: s.user.id, mode: 'builtin' };
  }
  await page.getByRole('heading', { name: 'GETLOOD' }).waitFor();
  if (screenshot) {
    await page.screenshot({ path: join(SHOTS, screenshot) });
    await axe(page, 'sign-in');
  }
  const token = devToken(tenant, user, 'admin');
  await useToken(page, token);
  await page.reload();
  await page.getByTestId('desktop').waitFor({ timeout: 30_000 });
  return { token, tenant, user, mode: 'dev-token' };
}

/** Puts a session in the app's storage (the development path; the sign-in form is the real one). */
export async function useToken(page, token) {
  await page.evaluate((t) => {
    const claims = JSON.parse(atob(t.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    localStorage.setItem('getlood.session', JSON.stringify({ token: t, expiresAt: claims.exp, user: { id: claims.sub, tenant: claims.tenant, roles: claims.roles } }));
  }, token);
}

export async function call(appUrl, token, method, path, body) {
  const r = await fetch(`${appUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** The README's first conversation's tenant setup: a ui-generation skill and an agent on the local model. */
export async function ensureAgent(appUrl, token) {
  const skills = await call(appUrl, token, 'GET', '/api/v1/skills');
  if (!skills.skills.some((s) => s.name === 'ui-generation')) {
    await call(appUrl, token, 'POST', '/api/v1/skills', { name: 'ui-generation', description: 'builds UIs' });
  }
  const agents = await call(appUrl, token, 'GET', '/api/v1/agents');
  if (!agents.agents.some((a) => a.name === 'dashboard_builder')) {
    const body = {
      name: 'dashboard_builder',
      description: 'builds dashboards',
      skills: ['ui-generation'],
      model: { provider: 'openai', model_name: 'gpt-4', base_url: process.env.E2E_MODEL_URL ?? 'http://127.0.0.1:18080/v1', api_key: 'sk-local' },
    };
    // A new tenant's first requests can race on creating its MindsDB project (a 500 naming
    // MindsDB's UNIQUE constraint, reported to the backend), and a busy MindsDB can miss the
    // registry's deadline (504) after creating the agent: look again, then try again.
    for (let attempt = 1; ; attempt++) {
      try {
        await call(appUrl, token, 'POST', '/api/v1/agents', body);
        break;
      } catch (e) {
        // A retry that finds the agent made by the attempt that timed out: that one landed.
        if (attempt > 1 && /: 409 /.test(String(e))) break;
        if (attempt === 3 || !/: (500|503|504) /.test(String(e))) throw e;
        await new Promise((r) => setTimeout(r, 2000 * attempt));
        const again = await call(appUrl, token, 'GET', '/api/v1/agents');
        if (again.agents.some((a) => a.name === body.name)) break;
      }
    }
  }
  return 'dashboard_builder';
}

/** axe-core on the page as it is: serious or critical violations fail. */
export async function axe(page, name) {
  // Evaluated through the DevTools protocol, which the page's CSP does not govern.
  await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  const minor = result.length - bad.length;
  if (bad.length) throw new Error(`axe on ${name}: ${bad.length} serious/critical violation(s):\n${bad.map((v) => `  ${v.impact} ${v.id}: ${v.help} — ${v.nodes.join(' | ')}`).join('\n')}`);
  return { serious: 0, minor };
}

export async function shot(page, file) {
  await page.screenshot({ path: join(SHOTS, file) });
}

/** A new browser context whose page shows the desktop of the user `token` names. */
export async function desktopAs(browser, appUrl, token, contextOptions = { viewport: VIEWPORT }) {
  const context = await browser.newContext(contextOptions);
  const page = await newPage(context);
  await page.goto(appUrl);
  await useToken(page, token);
  await page.reload();
  await page.getByTestId('desktop').waitFor({ timeout: 30_000 });
  return { context, page };
}

/**
 * A second user of the signed-in tenant with role `operator` (runs.approve): an account the
 * admin adds (POST /api/v1/auth/users) on a gateway with built-in accounts, else a development
 * token of `getlood dev`.
 */
export async function secondUser(appUrl, shared, name = 'approver') {
  if (shared.mode === 'builtin') {
    const email = `${name}-${shared.tenant}@example.com`;
    const password = 'approver horse battery staple';
    await call(appUrl, shared.token, 'POST', '/api/v1/auth/users', { email, password, roles: ['operator'] });
    const r = await fetch(`${appUrl}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
    if (!r.ok) throw new Error(`login of ${email}: ${r.status} ${await r.text()}`);
    return (await r.json()).access_token;
  }
  return devToken(shared.tenant, name, 'operator');
}
