// A real OpenID Connect provider for the e2e run: panva's oidc-provider (certified), offline on
// 127.0.0.1. One public client (the web app: authorization code + PKCE S256, redirected back to
// the gateway's `/`), one user, and access tokens that are JWTs for GETLOOD's audience carrying
// the claims libs/auth reads (`sub`, `tenant`, `roles`; `iss`/`aud` checked against auth.issuer /
// auth.audience). Its login and consent pages are the provider's own (devInteractions), which
// sign in only the accounts findAccount knows.
//
// `node tests/idp.mjs <port> <redirect-uri> <tenant>` runs one standalone (prints its issuer).
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import Provider from 'oidc-provider';

/** The GETLOOD audience the tokens are for (auth.audience of every service). */
export const AUDIENCE = 'getlood';
/** The resource indicator GETLOOD's API is known by at the provider. */
const RESOURCE = 'urn:getlood:api';

/** A port nobody listens on now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

// Every token is for GETLOOD's API, whether the client names the resource or not (the web app
// asks for `openid profile email` only): a JWT access token with GETLOOD's audience.
const resourceIndicators = {
  enabled: true,
  defaultResource: () => RESOURCE,
  useGrantedResource: () => true,
  getResourceServerInfo: (_ctx, indicator) => {
    if (indicator !== RESOURCE) throw new Provider.errors.InvalidTarget();
    return { scope: 'getlood', audience: AUDIENCE, accessTokenTTL: 3600, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
  },
};

/**
 * Starts a provider on `port` (a free one when 0). `users` maps a login to its claims
 * ({ email, name, tenant, roles }); `clients` are oidc-provider client metadata.
 * Returns { issuer, jwksUrl, authorizationEndpoint, tokenEndpoint, close() }.
 */
export async function startIdp({ port = 0, clients, users = {}, clientCredentials = null }) {
  port ||= await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey()] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    // Every lifetime said, so the library does not warn about its defaults.
    ttl: { AccessToken: 3600, AuthorizationCode: 60, ClientCredentials: 600, Grant: 3600, IdToken: 3600, Interaction: 600, Session: 3600 },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    features: {
      devInteractions: { enabled: true },
      resourceIndicators,
      clientCredentials: { enabled: !!clientCredentials },
    },
    async findAccount(_ctx, id) {
      const user = users[id];
      if (!user) return undefined;
      return { accountId: id, claims: async () => ({ sub: id, email: user.email, email_verified: true, name: user.name }) };
    },
    // GETLOOD's claims in the access token: the user's tenant and roles, or (client credentials)
    // the ones this provider was given for its machine clients.
    async extraTokenClaims(_ctx, token) {
      if (token.kind === 'ClientCredentials') return clientCredentials;
      const user = token.accountId && users[token.accountId];
      return user ? { tenant: user.tenant, roles: user.roles, email: user.email } : undefined;
    },
    // The library's default client CORS check warns on every call; this is the same rule (the
    // web app's origin, from its redirect URI) said once.
    clientBasedCORS: (_ctx, origin, client) => client.redirectUris.some((uri) => URL.parse(uri)?.origin === origin),
  });
  const server = await new Promise((resolve, reject) => {
    const s = provider.listen(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
  return {
    issuer,
    jwksUrl: `${issuer}/jwks`,
    authorizationEndpoint: `${issuer}/auth`,
    tokenEndpoint: `${issuer}/token`,
    /** A client-credentials access token (clients with `client_secret`). */
    async machineToken(clientId, secret) {
      const r = await fetch(`${issuer}/token`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Basic ${Buffer.from(`${clientId}:${secret}`).toString('base64')}` },
        body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE, scope: 'getlood' }),
      });
      if (!r.ok) throw new Error(`client credentials at ${issuer}: ${r.status} ${await r.text()}`);
      return (await r.json()).access_token;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [port, redirectUri, tenant = 'idp'] = process.argv.slice(2);
  const idp = await startIdp({
    port: Number(port) || 0,
    clients: [{ client_id: 'getlood-web', token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], response_types: ['code'], redirect_uris: [redirectUri ?? 'http://127.0.0.1:8080/'] }],
    users: { ada: { email: 'ada@example.com', name: 'Ada Lovelace', tenant, roles: ['admin'] } },
  });
  console.log(JSON.stringify({ issuer: idp.issuer, jwks_url: idp.jwksUrl }));
}
