// Sign-in with the configured OpenID Connect provider (authorization code + PKCE), against a
// real provider (tests/idp.mjs: oidc-provider on 127.0.0.1) and a `getlood dev` of its own whose
// six services trust that provider only. Open the app, pick the provider, sign in and consent on
// the provider's pages, land on the desktop as that user, one window call through the API the
// token names, sign out; a token of another issuer (and a development token) is refused.
import { join } from 'node:path';
import { AUDIENCE, freePort, startIdp } from './idp.mjs';
import { oidcPlatform, devToken } from './platform.mjs';
import { axe, checkPage, expect, newPage, RUN_ID, SHOTS, useToken, VIEWPORT } from './helpers.mjs';

export const name = 'oidc';

const CLIENT_ID = 'getlood-web';
const ROGUE_SECRET = 'rogue-secret-0123456789abcdef0123456789';

/** The status and error message of GET /api/v1/me with `token`. */
async function me(url, token) {
  const r = await fetch(`${url}/api/v1/me`, { headers: { authorization: `Bearer ${token}` } });
  return { status: r.status, body: await r.json().catch(() => null) };
}

export async function run({ browser, log }) {
  const tenant = `oidc${RUN_ID}`;
  const ports = await Promise.all(Array.from({ length: 19 }, freePort));
  const gatewayPort = ports.pop();
  const appUrl = `http://127.0.0.1:${gatewayPort}`;
  const idp = await startIdp({
    clients: [{ client_id: CLIENT_ID, token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'], redirect_uris: [`${appUrl}/`] }],
    users: { ada: { email: 'ada@example.com', name: 'Ada Lovelace', tenant, roles: ['admin'] } },
  });
  // Another issuer with its own keys, minting tokens with the same audience, tenant and roles.
  const rogue = await startIdp({
    clients: [{ client_id: 'rogue', client_secret: ROGUE_SECRET, grant_types: ['client_credentials'], response_types: [], redirect_uris: [] }],
    clientCredentials: { tenant, roles: ['admin'] },
  });
  let platform;
  let context;
  try {
    platform = await oidcPlatform(idp, { gatewayPort, clientId: CLIENT_ID, audience: AUDIENCE, ports });
    log(`provider ${idp.issuer}, platform ${appUrl} (auth.issuer = the provider, auth.audience = ${AUDIENCE})`);

    const cfg = await (await fetch(`${appUrl}/api/v1/auth/config`)).json();
    expect(cfg.mode === 'oidc' && cfg.oidc?.issuer === idp.issuer && cfg.oidc.client_id === CLIENT_ID, `auth config: ${JSON.stringify(cfg)}`);

    context = await browser.newContext({ viewport: VIEWPORT });
    const page = await newPage(context);
    await page.goto(appUrl);
    const button = page.getByTestId('login-oidc');
    await button.waitFor();
    expect((await button.textContent()).includes(new URL(idp.issuer).host), `the sign-in button names ${await button.textContent()}`);
    await page.screenshot({ path: join(SHOTS, 'sign-in-oidc.png') });
    const a11y = await axe(page, 'sign-in (oidc)');
    log(`sign-in offers the provider; axe: 0 serious/critical, ${a11y.minor} minor`);

    // Cancelled at the provider: back on the sign-in screen with its reason.
    await button.click();
    await page.waitForURL((u) => u.origin === idp.issuer);
    await page.getByRole('link', { name: '[ Cancel ]' }).click();
    const refusal = page.getByTestId('login-error');
    await refusal.waitFor();
    expect((await refusal.textContent()).includes('End-User aborted interaction'), `after a cancel: ${await refusal.textContent()}`);
    await page.getByTestId('login-oidc').waitFor();
    log(`cancelled at the provider: "${await refusal.textContent()}"`);

    // The provider's own login and consent pages; the ID token is kept for a check below.
    let idToken;
    page.on('response', async (res) => {
      if (res.url() === idp.tokenEndpoint && res.request().method() === 'POST') idToken = (await res.json().catch(() => ({}))).id_token;
    });
    await page.getByTestId('login-oidc').click();
    await page.waitForURL((u) => u.origin === idp.issuer);
    await page.locator('input[name=login]').fill('ada');
    await page.locator('input[name=password]').fill('any password');
    await page.getByRole('button', { name: 'Sign-in' }).click();
    await page.getByRole('button', { name: 'Continue' }).click();
    await page.getByTestId('desktop').waitFor({ timeout: 30_000 });
    expect(new URL(page.url()).search === '', `the callback's code and state are left in the address: ${page.url()}`);
    const session = await page.evaluate(() => JSON.parse(localStorage.getItem('getlood.session')));
    expect(session?.user.id === 'ada' && session.user.tenant === tenant && session.user.roles.includes('admin'), `session: ${JSON.stringify(session?.user)}`);
    log(`signed in at the provider as ada, on the desktop of tenant ${tenant}`);

    // Authenticated calls: the gateway, and desktop-state behind it, verify the provider's token.
    const who = await me(appUrl, session.token);
    expect(who.status === 200 && who.body.tenant === tenant && who.body.user === 'ada', `/api/v1/me: ${JSON.stringify(who)}`);
    await page.getByTestId('console-universe').click();
    const win = page.getByTestId('window-console');
    await win.waitFor();
    const id = await win.evaluate((el) => el.dataset.windowId);
    const r = await fetch(`${appUrl}/api/v1/windows/${id}`, { headers: { authorization: `Bearer ${session.token}` } });
    expect(r.ok, `GET /api/v1/windows/${id}: ${r.status} ${await r.text()}`);
    log(`opened the console window ${id}; /api/v1/me and /api/v1/windows/{id} answer 200 with the provider's token`);

    await page.getByTestId('sign-out').click();
    await page.getByTestId('login-oidc').waitFor();
    expect((await page.evaluate(() => localStorage.getItem('getlood.session'))) === null, 'the session outlived sign-out');
    await checkPage(page);
    log('signed out: back on the sign-in screen, session gone');

    // Refused: another issuer's token (same audience, tenant, roles), and a development token.
    const foreign = await rogue.machineToken('rogue', ROGUE_SECRET);
    const refused = await me(appUrl, foreign);
    expect(refused.status === 401, `a token of ${rogue.issuer} got ${JSON.stringify(refused)}`);
    // The provider's ID token is for the web app (aud = its client id), not for GETLOOD.
    expect(idToken, 'the token response had no id_token');
    const wrongAudience = await me(appUrl, idToken);
    expect(wrongAudience.status === 401, `the ID token got ${JSON.stringify(wrongAudience)}`);
    const dev = await me(appUrl, devToken(tenant, 'ada', 'admin'));
    expect(dev.status === 401, `a development token got ${JSON.stringify(dev)}`);
    // The app, handed the foreign token, is signed out by the gateway's 401.
    await useToken(page, foreign);
    await page.reload();
    await page.getByTestId('login-oidc').waitFor({ timeout: 30_000 });
    log(`refused: ${rogue.issuer}'s token (401 ${refused.body?.message}), the ID token (401 ${wrongAudience.body?.message}), a development token (401 ${dev.body?.message}); the app went back to sign-in`);
  } finally {
    await context?.close();
    platform?.stop();
    await idp.close();
    await rogue.close();
  }
}
