// OpenID Connect authorization code flow with PKCE (S256), for `mode: "oidc"`.

export interface OidcConfig {
  issuer: string;
  client_id: string;
  authorization_endpoint: string;
  token_endpoint: string;
  scopes?: string[] | string;
}

const PENDING = 'getlood.oidc.pending';

function base64url(bytes: Uint8Array): string {
  let s = '';
  bytes.forEach((b) => (s += String.fromCharCode(b)));
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

function redirectUri(): string {
  return `${window.location.origin}/`;
}

/** Sends the browser to the identity provider. */
export async function startOidc(cfg: OidcConfig): Promise<void> {
  const verifier = random(48);
  const state = random(16);
  const challenge = base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier))));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, token_endpoint: cfg.token_endpoint, client_id: cfg.client_id }));
  const scopes = Array.isArray(cfg.scopes) ? cfg.scopes.join(' ') : cfg.scopes || 'openid profile email';
  const q = new URLSearchParams({
    response_type: 'code',
    client_id: cfg.client_id,
    redirect_uri: redirectUri(),
    scope: scopes,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  window.location.assign(`${cfg.authorization_endpoint}?${q}`);
}

export interface OidcTokens {
  access_token: string;
  id_token?: string;
  expires_in?: number;
}

/** On the way back (`?code&state`): exchanges the code; null when this is not a callback. */
export async function finishOidc(): Promise<OidcTokens | null> {
  const params = new URLSearchParams(window.location.search);
  const code = params.get('code');
  const state = params.get('state');
  const error = params.get('error');
  if (!code && !error) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null') as
    | { verifier: string; state: string; token_endpoint: string; client_id: string }
    | null;
  sessionStorage.removeItem(PENDING);
  window.history.replaceState(null, '', window.location.pathname);
  if (error) throw new Error(`the identity provider refused: ${params.get('error_description') ?? error}`);
  if (!pending || pending.state !== state) throw new Error('the sign-in answer does not match the request (state); try again');
  const res = await fetch(pending.token_endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: code!,
      redirect_uri: redirectUri(),
      client_id: pending.client_id,
      code_verifier: pending.verifier,
    }),
  });
  if (!res.ok) throw new Error(`the identity provider refused the code (HTTP ${res.status})`);
  return (await res.json()) as OidcTokens;
}
