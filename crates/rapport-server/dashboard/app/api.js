// The dashboard's only way to data: the REST API, as the CLI calls it, with the session
// cookie in place of an admin key. Every change carries the session's CSRF token.

let csrf = '';

/** Sets the token sent as X-CSRF-Token (from the session, at sign-in). */
export function setCsrf(token) {
  csrf = token || '';
}

/** An error answered by the API: its HTTP status, code, message and field. */
export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `the server answered ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.field = e.field || null;
  }
}

let onSignedOut = () => {};
/** What to do when the session has ended (a 401): show the sign-in form. */
export function whenSignedOut(f) {
  onSignedOut = f;
}

/**
 * Calls the API: `path` (with `query`, an object whose empty values are left out) and a
 * JSON `body`. Resolves to the parsed JSON (null for 204), or rejects with ApiError.
 */
export async function api(path, { method = 'GET', query, body, signal } = {}) {
  let url = path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') q.set(k, v);
    }
    const text = q.toString();
    if (text) url += (url.includes('?') ? '&' : '?') + text;
  }
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    signal,
  });
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const err = new ApiError(res.status, json);
    if (res.status === 401 && path !== '/session') onSignedOut(err);
    throw err;
  }
  return json;
}

/** Every page of a paged listing (`data`, `next_cursor`), up to `max` items. */
export async function all(path, query = {}, max = 1000) {
  const out = [];
  let cursor;
  do {
    const page = await api(path, { query: { ...query, cursor, limit: Math.min(100, max) } });
    out.push(...(page.data || []));
    cursor = page.next_cursor;
  } while (cursor && out.length < max);
  return out;
}
