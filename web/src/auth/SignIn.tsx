import { lazy, Suspense, useEffect, useState, type FormEvent } from 'react';
import { useAtom, useSetAtom } from 'jotai';
import { api, ApiError, describe } from '../api/client';
import { sessionAtom, sessionFromToken, signOutReasonAtom, type SessionUser } from './session';
import { finishOidc, startOidc, type OidcConfig } from './oidc';

interface AuthConfig {
  mode: 'builtin' | 'oidc';
  oidc?: OidcConfig;
  /** Whether anyone may create a tenant (built-in mode). */
  signup?: boolean;
}

interface LoginAnswer {
  access_token: string;
  token_type: string;
  expires_in: number;
  user: SessionUser;
}

// Only in `npm run dev`: Vite replaces import.meta.env.DEV with false in a build, so the
// paste-a-token form and its chunk are not in web/dist at all.
const DevToken = import.meta.env.DEV ? lazy(() => import('./DevToken')) : null;

const field =
  'mt-1 block w-full rounded-md border border-slate-400 bg-white px-3 py-2 text-slate-900 focus:border-indigo-600 focus:outline-none focus:ring-2 focus:ring-indigo-600';

export default function SignIn() {
  const setSession = useSetAtom(sessionAtom);
  const [reason, setReason] = useAtom(signOutReasonAtom);
  const [config, setConfig] = useState<AuthConfig | null>(null);
  const [configError, setConfigError] = useState<string | null>(null);
  const [tab, setTab] = useState<'login' | 'signup'>('login');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [tenant, setTenant] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  useEffect(() => {
    let cancelled = false;
    (async () => {
      try {
        const tokens = await finishOidc();
        if (tokens) {
          const s = sessionFromToken(tokens.access_token, undefined, tokens.expires_in);
          if (s) setSession(s);
          return;
        }
      } catch (e) {
        if (!cancelled) setError(describe(e));
      }
      try {
        const c = await api<AuthConfig>('/api/v1/auth/config', { anonymous: true });
        if (!cancelled) setConfig(c);
      } catch (e) {
        if (!cancelled)
          setConfigError(
            e instanceof ApiError && e.status === 404
              ? 'This gateway offers no sign-in (no built-in accounts and no identity provider are configured).'
              : `The sign-in settings could not be read: ${describe(e)}`,
          );
      }
    })();
    return () => {
      cancelled = true;
    };
  }, [setSession]);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    setReason(null);
    try {
      const body = tab === 'login' ? { email, password } : { email, password, tenant };
      const a = await api<LoginAnswer>(`/api/v1/auth/${tab}`, { body, anonymous: true });
      const s = sessionFromToken(a.access_token, a.user, a.expires_in);
      if (!s) throw new Error('the gateway answered without a usable token');
      setSession(s);
    } catch (err) {
      setError(
        err instanceof ApiError && err.status === 401 ? 'Wrong email or password.' : describe(err),
      );
    } finally {
      setBusy(false);
    }
  };

  return (
    <main className="flex min-h-full items-center justify-center bg-gradient-to-br from-slate-900 to-indigo-950 p-4">
      <div className="w-full max-w-sm rounded-xl bg-white p-6 shadow-2xl">
        <h1 className="text-2xl font-bold text-slate-900">GETLOOD</h1>
        <p className="mb-4 text-sm text-slate-600">The agentic desktop</p>
        {reason && (
          <p role="status" className="mb-3 rounded bg-amber-100 p-2 text-sm text-amber-900">
            {reason}
          </p>
        )}
        {!config && !configError && <p className="text-slate-700">Loading sign-in…</p>}
        {configError && (
          <p role="alert" className="mb-3 rounded bg-red-100 p-2 text-sm text-red-900">
            {configError}
          </p>
        )}
        {config?.mode === 'oidc' && config.oidc && (
          <button
            type="button"
            className="w-full rounded-md bg-indigo-700 px-4 py-2 font-semibold text-white hover:bg-indigo-800 focus:outline-none focus:ring-2 focus:ring-indigo-400 focus:ring-offset-2"
            onClick={() => void startOidc(config.oidc!).catch((e) => setError(describe(e)))}
            data-testid="login-oidc"
          >
            Sign in with {new URL(config.oidc.issuer).host}
          </button>
        )}
        {config?.mode === 'builtin' && (
          <>
            <div role="tablist" aria-label="Account" className="mb-4 flex gap-1 rounded-md bg-slate-100 p-1">
              {(config.signup === false ? (['login'] as const) : (['login', 'signup'] as const)).map((t) => (
                <button
                  key={t}
                  role="tab"
                  type="button"
                  id={`tab-${t}`}
                  aria-selected={tab === t}
                  aria-controls="auth-form"
                  className={`flex-1 rounded px-2 py-1 text-sm font-medium ${tab === t ? 'bg-white text-slate-900 shadow' : 'text-slate-700'}`}
                  onClick={() => setTab(t)}
                  data-testid={`tab-${t}`}
                >
                  {t === 'login' ? 'Sign in' : 'Create account'}
                </button>
              ))}
            </div>
            <form id="auth-form" role="tabpanel" aria-labelledby={`tab-${tab}`} onSubmit={submit} className="space-y-3">
              <label className="block text-sm font-medium text-slate-800">
                Email
                <input
                  className={field}
                  type="email"
                  autoComplete="username"
                  required
                  value={email}
                  onChange={(e) => setEmail(e.target.value)}
                  data-testid="email"
                />
              </label>
              <label className="block text-sm font-medium text-slate-800">
                Password
                <input
                  className={field}
                  type="password"
                  autoComplete={tab === 'login' ? 'current-password' : 'new-password'}
                  required
                  value={password}
                  onChange={(e) => setPassword(e.target.value)}
                  data-testid="password"
                />
              </label>
              {tab === 'signup' && (
                <label className="block text-sm font-medium text-slate-800">
                  Organisation (tenant)
                  <input
                    className={field}
                    required
                    pattern="[a-z0-9][a-z0-9_]{0,47}"
                    title="1 to 48 lower-case letters, digits and _, not starting with _"
                    value={tenant}
                    onChange={(e) => setTenant(e.target.value)}
                    data-testid="tenant"
                  />
                </label>
              )}
              <button
                type="submit"
                disabled={busy}
                className="w-full rounded-md bg-indigo-700 px-4 py-2 font-semibold text-white hover:bg-indigo-800 focus:outline-none focus:ring-2 focus:ring-indigo-400 focus:ring-offset-2 disabled:opacity-60"
                data-testid="login"
              >
                {busy ? 'Please wait…' : tab === 'login' ? 'Sign in' : 'Create account'}
              </button>
            </form>
          </>
        )}
        {error && (
          <p role="alert" className="mt-3 rounded bg-red-100 p-2 text-sm text-red-900" data-testid="login-error">
            {error}
          </p>
        )}
        {DevToken && (
          <Suspense fallback={null}>
            <DevToken />
          </Suspense>
        )}
      </div>
    </main>
  );
}
