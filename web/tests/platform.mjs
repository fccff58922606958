// The platform an e2e run talks to: a running gateway (GETLOOD_URL), or `getlood dev` started
// here; and the app: served by the gateway at `/`, or by `vite preview` passing the API on.
import { spawn, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO = resolve(WEB, '..');

const children = [];
export function stopAll() {
  for (const c of children.reverse()) {
    try {
      process.kill(-c.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
}
process.on('exit', stopAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

async function answers(url, ms = 2000) {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(ms) });
    return r;
  } catch {
    return null;
  }
}

async function waitFor(what, check, timeoutMs) {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > until) throw new Error(`${what}: not ready after ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

function start(name, cmd, args, opts = {}) {
  const c = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  children.push(c);
  let tail = '';
  const keep = (b) => {
    tail = (tail + b.toString()).slice(-4000);
    if (process.env.E2E_LOG) process.stderr.write(`[${name}] ${b}`);
  };
  c.stdout.on('data', keep);
  c.stderr.on('data', keep);
  c.on('exit', (code) => {
    if (code && code !== 143) console.error(`${name} exited with ${code}:\n${tail}`);
  });
  return c;
}

export function getloodBin() {
  // `make web-e2e` builds into CARGO_TARGET_DIR when it is set (relative to the repository,
  // where cargo runs), else into target/.
  const target = process.env.CARGO_TARGET_DIR ? resolve(REPO, process.env.CARGO_TARGET_DIR) : join(REPO, 'target');
  const candidates = [process.env.GETLOOD_BIN, join(target, 'debug/getlood'), join(target, 'release/getlood')].filter(Boolean);
  const bin = candidates.find((p) => existsSync(p));
  if (!bin) throw new Error(`no getlood binary (looked at ${candidates.join(', ')}): cargo build --bin getlood, or set GETLOOD_BIN`);
  return bin;
}

/** A development token of `getlood dev`'s secret for tenant/user/roles. */
export function devToken(tenant, user, roles = 'admin') {
  return execFileSync(getloodBin(), ['token', '--tenant', tenant, '--user', user, '--roles', roles], { encoding: 'utf8', cwd: REPO }).trim().split('\n').pop();
}

const SERVICES_WITH_POSTGRES = ['GATEWAY', 'PIPELINE', 'DESKTOP_STATE', 'WORKFLOW', 'AGENT_REGISTRY'];

/**
 * A database of its own for the `getlood dev` these tests start, made anew each run, so the
 * schemas its migrations expect never meet another build's (the shared `test` database holds
 * whatever the last binary run against it migrated). E2E_DATABASE names it.
 */
function freshDatabase(db = process.env.E2E_DATABASE ?? 'getlood_web_e2e') {
  const base = process.env.E2E_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432';
  if (!/^[a-z_][a-z0-9_]*$/.test(db)) throw new Error(`E2E_DATABASE must be a plain name, not ${db}`);
  const psql = (sql) => execFileSync('psql', [`${base}/postgres`, '-v', 'ON_ERROR_STOP=1', '-qAtc', sql], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PGOPTIONS: '-c client_min_messages=warning' } });
  psql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  psql(`CREATE DATABASE ${db}`);
  return Object.fromEntries(SERVICES_WITH_POSTGRES.map((svc) => [`GETLOOD_${svc}_POSTGRES__URL`, `${base}/${db}`]));
}

/** The gateway URL, starting `getlood dev` (after MindsDB and the local model) when none runs. */
export async function gateway() {
  const url = (process.env.GETLOOD_URL ?? 'http://127.0.0.1:8080').replace(/\/$/, '');
  if (await answers(`${url}/livez`)) return { url, started: false };
  if (process.env.GETLOOD_URL) throw new Error(`GETLOOD_URL=${url} does not answer /livez`);
  for (const s of ['scripts/mindsdb.sh', 'scripts/llm.sh']) {
    execFileSync(join(REPO, s), ['start'], { cwd: REPO, stdio: process.env.E2E_LOG ? 'inherit' : 'ignore' });
  }
  start('getlood dev', getloodBin(), ['dev'], { cwd: REPO, env: { ...process.env, ...freshDatabase() } });
  await waitFor('getlood dev', async () => (await answers(`${url}/readyz`))?.ok, 240_000);
  return { url, started: true };
}

/** Where the app is: the gateway's own `/`, else `vite preview` of web/dist on :5173. */
export async function app(gatewayUrl) {
  const root = await answers(`${gatewayUrl}/`);
  if (root?.ok && (await root.text()).includes('id="root"') && !process.env.E2E_PREVIEW) return { url: gatewayUrl, servedBy: 'gateway' };
  if (!existsSync(join(WEB, 'dist/index.html'))) throw new Error('web/dist is missing: npm run build first');
  const url = 'http://127.0.0.1:5173';
  if (!(await answers(url))) {
    start('vite preview', process.execPath, [join(WEB, 'node_modules/vite/bin/vite.js'), 'preview'], { cwd: WEB, env: { ...process.env, GETLOOD_URL: gatewayUrl } });
    await waitFor('vite preview', async () => (await answers(url))?.ok, 30_000);
  }
  return { url, servedBy: 'vite preview' };
}

const SERVICES = ['GATEWAY', 'PIPELINE', 'DESKTOP_STATE', 'WORKFLOW', 'AGENT_REGISTRY', 'EVENT_DISPATCHER'];

/**
 * A second `getlood dev` whose six services verify tokens of the OpenID Connect provider `idp`
 * only (auth.jwks_url / issuer / audience), its gateway in `oidc` mode (app.oidc.*) on
 * `gatewayPort`: on ports of its own, with its own database, Redis key prefix and NATS subject
 * prefix, so it shares nothing with the platform the other specs use but MindsDB. Returns
 * { url, stop() }.
 */
export async function oidcPlatform(idp, { gatewayPort, clientId, audience, ports }) {
  const env = { ...process.env, ...freshDatabase(`${process.env.E2E_DATABASE ?? 'getlood_web_e2e'}_oidc`) };
  const grpc = Object.fromEntries(SERVICES.map((s, i) => [s, ports[i]]));
  SERVICES.forEach((svc, i) => {
    const p = `GETLOOD_${svc}_`;
    env[`${p}HTTP_ADDR`] = `127.0.0.1:${svc === 'GATEWAY' ? gatewayPort : ports[6 + i]}`;
    env[`${p}GRPC_ADDR`] = `127.0.0.1:${grpc[svc]}`;
    env[`${p}ADMIN_ADDR`] = `127.0.0.1:${ports[12 + i]}`;
    for (const other of SERVICES) env[`${p}SERVICES__${other}`] = `http://127.0.0.1:${grpc[other]}`;
    env[`${p}AUTH__JWKS_URL`] = idp.jwksUrl;
    env[`${p}AUTH__ISSUER`] = idp.issuer;
    env[`${p}AUTH__AUDIENCE`] = audience;
    env[`${p}NATS__SUBJECT_PREFIX`] = 'getlood_e2e_oidc';
    env[`${p}REDIS__KEY_PREFIX`] = 'getlood-e2e-oidc';
  });
  env.GETLOOD_GATEWAY_APP__OIDC__CLIENT_ID = clientId;
  env.GETLOOD_GATEWAY_APP__OIDC__AUTHORIZATION_ENDPOINT = idp.authorizationEndpoint;
  env.GETLOOD_GATEWAY_APP__OIDC__TOKEN_ENDPOINT = idp.tokenEndpoint;
  const child = start('getlood dev (oidc)', getloodBin(), ['dev'], { cwd: REPO, env });
  const url = `http://127.0.0.1:${gatewayPort}`;
  const desktopState = `http://127.0.0.1:${ports[12 + SERVICES.indexOf('DESKTOP_STATE')]}/readyz`;
  await waitFor('getlood dev (oidc)', async () => (await answers(`${url}/readyz`))?.ok && (await answers(desktopState))?.ok, 240_000);
  return {
    url,
    stop() {
      try {
        process.kill(-child.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
    },
  };
}
