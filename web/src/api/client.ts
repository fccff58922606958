// One way to call the gateway: the bearer token, the JSON error body, and 401 handling.

/** The gateway's origin: empty, the page's own (the gateway serves the app; `npm run dev` passes the API paths on). */
export const apiBase = '';

/** The WebSocket origin matching `apiBase`. */
export function wsBase(): string {
  const http = apiBase || window.location.origin;
  return http.replace(/^http/, 'ws');
}

/** A refused request, with the gateway's `{code, message}` body. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let currentToken: string | null = null;
let onUnauthenticated: (() => void) | null = null;

/** Set by the auth atoms: the token every call carries, and what a 401 does. */
export function configureClient(token: string | null, unauthenticated: (() => void) | null): void {
  currentToken = token;
  onUnauthenticated = unauthenticated;
}

export function token(): string | null {
  return currentToken;
}

export interface RequestOptions {
  method?: string;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Don't treat a 401 as a signed-out session (sign-in itself). */
  anonymous?: boolean;
  /** Let the request finish when the page goes away (a window change just before a reload). */
  keepalive?: boolean;
}

export async function raw(path: string, opts: RequestOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  if (currentToken && !opts.anonymous) headers.authorization = `Bearer ${currentToken}`;
  const res = await fetch(apiBase + path, {
    method: opts.method ?? (opts.body === undefined ? 'GET' : 'POST'),
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    signal: opts.signal,
    keepalive: opts.keepalive,
  });
  if (!res.ok) {
    let code = `http_${res.status}`;
    let message = res.statusText || `HTTP ${res.status}`;
    let body: unknown;
    try {
      body = await res.json();
      const b = body as { code?: string; message?: string; error?: { code?: string; message?: string } };
      code = b.code ?? b.error?.code ?? code;
      message = b.message ?? b.error?.message ?? message;
    } catch {
      /* not JSON: keep the status text */
    }
    if (res.status === 401 && !opts.anonymous) onUnauthenticated?.();
    throw new ApiError(res.status, code, message, body);
  }
  return res;
}

export async function api<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const res = await raw(path, opts);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Human words for an error shown in the UI. */
export function describe(err: unknown): string {
  if (err instanceof ApiError) return `${err.message} (${err.code})`;
  if (err instanceof Error) return err.message;
  return String(err);
}
