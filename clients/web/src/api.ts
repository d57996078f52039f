// REST calls, and the session's tokens: kept fresh before they expire, refreshed and retried once
// when the server says 401, and never refreshed twice at the same time.
import type { AuthResponse, ErrorBody, ErrorResponse, Tokens } from '@huddle/types';

/** A failed call: the contract's error body, or a network failure (`code` `network`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorBody['code'] | 'network',
    message: string,
    readonly fields?: { [field: string]: string },
  ) {
    super(message);
  }
}

interface Stored {
  tokens: Tokens;
  /** When the access token expires (ms since the epoch), from `expires_in` at issue. */
  expiresAt: number;
  /** The workspace slug typed at login, shown until `/api/workspace` answers. */
  workspace: string;
}

// sessionStorage, not localStorage: refresh tokens rotate, and two tabs sharing one would race
// to refresh it; the server takes the loser's reuse for theft and ends the session. Each tab is
// a session of its own, and a reload keeps it.
const KEY = 'huddle.session';

let session: Stored | null = load();
let refreshing: Promise<boolean> | null = null;
let timer: ReturnType<typeof setTimeout> | undefined;
let onSessionEnd: (why: string) => void = () => {};

function load(): Stored | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    return raw ? (JSON.parse(raw) as Stored) : null;
  } catch {
    return null;
  }
}

function save(tokens: Tokens, workspace: string): void {
  const expiresAt = Date.now() + tokens.expires_in * 1000;
  session = { tokens, expiresAt, workspace };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  schedule();
}

/** Refreshes at 80% of the token's life, so sockets reconnecting and requests find it valid. */
function schedule(): void {
  clearTimeout(timer);
  if (!session) return;
  const left = session.expiresAt - Date.now();
  timer = setTimeout(() => void refresh(), Math.max(1000, left - Math.max(2000, left * 0.2)));
}

export function hasSession(): boolean {
  return session !== null;
}

export function workspaceSlug(): string {
  return session?.workspace ?? '';
}

/** The current access token (the socket's `auth` asks for it at every (re)connect). */
export function accessToken(): string {
  return session?.tokens.access_token ?? '';
}

/** Expired, or about to be: a request sent a second before expiry may arrive after it. */
export function tokenExpired(): boolean {
  return !session || Date.now() >= session.expiresAt - 1000;
}

/** Called when the session can no longer be refreshed (revoked, expired, logged out). */
export function whenSessionEnds(handler: (why: string) => void): void {
  onSessionEnd = handler;
}

export function start(auth: AuthResponse, workspace: string): void {
  save(auth, workspace);
}

export function clear(): void {
  clearTimeout(timer);
  session = null;
  sessionStorage.removeItem(KEY);
}

/**
 * Exchanges the refresh token, once at a time: concurrent callers share one exchange (a second
 * exchange of the same token would revoke the session). Resolves `true` with fresh tokens,
 * `false` when the session is over (then `onSessionEnd` has been told). A network failure keeps
 * the session and tries again later.
 */
export function refresh(): Promise<boolean> {
  if (!session) return Promise.resolve(false);
  if (refreshing) return refreshing;
  const { tokens, workspace } = session;
  refreshing = (async () => {
    try {
      const res = await fetch('/api/auth/refresh', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ refresh_token: tokens.refresh_token }),
      });
      if (res.ok) {
        save((await res.json()) as Tokens, workspace);
        return true;
      }
      if (res.status === 401 || res.status === 403) {
        clear();
        onSessionEnd('Your session has ended: please log in again.');
        return false;
      }
      schedule();
      return false;
    } catch {
      // Offline: try again in a while; the socket's reconnect will ask too.
      clearTimeout(timer);
      timer = setTimeout(() => void refresh(), 5000);
      return false;
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

/** Calls the API; on 401 `unauthorized` refreshes the token and retries once. */
export async function call<T>(method: string, path: string, body?: unknown, authed = true): Promise<T> {
  if (authed && tokenExpired()) await refresh();
  let res = await send(method, path, body, authed);
  if (authed && res.status === 401 && (await refresh())) res = await send(method, path, body, authed);
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  const json: unknown = text ? JSON.parse(text) : undefined;
  if (!res.ok) {
    const err = (json as ErrorResponse | undefined)?.error;
    throw new ApiError(res.status, err?.code ?? 'internal', err?.message ?? res.statusText, err?.fields);
  }
  return json as T;
}

async function send(method: string, path: string, body: unknown, authed: boolean): Promise<Response> {
  const headers: Record<string, string> = {};
  if (authed && session) headers.authorization = `Bearer ${session.tokens.access_token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    return await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached.');
  }
}

if (session) schedule();
