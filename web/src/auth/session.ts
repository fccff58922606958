// The signed-in session: the bearer token (kept in localStorage so every tab of the origin is
// signed in, and a reload stays signed in) and the user it names.
import { atom } from 'jotai';
import { configureClient } from '../api/client';

export interface SessionUser {
  id: string;
  email?: string;
  tenant: string;
  roles: string[];
}

export interface Session {
  token: string;
  user: SessionUser;
  /** Seconds since the epoch. */
  expiresAt: number;
}

const KEY = 'getlood.session';

/** The claims of a JWT, unverified: only to show who is signed in and when it expires. */
export function decodeClaims(jwt: string): Record<string, unknown> | null {
  const part = jwt.split('.')[1];
  if (!part) return null;
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    return JSON.parse(new TextDecoder().decode(Uint8Array.from(json, (c) => c.charCodeAt(0))));
  } catch {
    return null;
  }
}

/** A session from a token alone (OIDC and the development path), its user from the claims. */
export function sessionFromToken(jwt: string, user?: Partial<SessionUser>, expiresIn?: number): Session | null {
  const claims = decodeClaims(jwt);
  if (!claims && !user) return null;
  const now = Math.floor(Date.now() / 1000);
  const exp = typeof claims?.exp === 'number' ? claims.exp : expiresIn ? now + expiresIn : now + 3600;
  const roles = Array.isArray(claims?.roles) ? (claims!.roles as string[]) : typeof claims?.roles === 'string' ? String(claims.roles).split(/[ ,]/) : [];
  return {
    token: jwt,
    expiresAt: exp,
    user: {
      id: user?.id ?? String(claims?.sub ?? ''),
      email: user?.email ?? (typeof claims?.email === 'string' ? claims.email : undefined),
      tenant: user?.tenant ?? String(claims?.tenant ?? ''),
      roles: user?.roles ?? roles,
    },
  };
}

function load(): Session | null {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) ?? 'null') as Session | null;
    if (!s || s.expiresAt * 1000 <= Date.now()) return null;
    return s;
  } catch {
    return null;
  }
}

const baseSession = atom<Session | null>(load());

/** The session; writing it stores it (or signs out with null). */
export const sessionAtom = atom(
  (get) => get(baseSession),
  (_get, set, next: Session | null) => {
    if (next) localStorage.setItem(KEY, JSON.stringify(next));
    else {
      localStorage.removeItem(KEY);
      // What the apps kept for this user (the chat's conversation) goes with the session.
      for (const k of Object.keys(localStorage)) if (k.startsWith('getlood.') && k !== KEY) localStorage.removeItem(k);
    }
    set(baseSession, next);
  },
);

/** Why the last session ended, shown on the sign-in screen. */
export const signOutReasonAtom = atom<string | null>(null);

export const isAdminAtom = atom((get) => get(sessionAtom)?.user.roles.includes('admin') ?? false);

/** Keeps the API client's token in step with the session (called from the app root). */
export function bindClient(session: Session | null, expired: () => void): void {
  configureClient(session?.token ?? null, expired);
}

/** Another tab signing in or out changes this one too. */
export function watchOtherTabs(onChange: (s: Session | null) => void): () => void {
  const listener = (e: StorageEvent) => {
    if (e.key === KEY) onChange(load());
  };
  window.addEventListener('storage', listener);
  return () => window.removeEventListener('storage', listener);
}
