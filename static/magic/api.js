/*
 * The widget's side of Relay's HTTP API (docs/api.md): errors, credentials, JSON calls.
 *
 * Credentials: a user JWT handed over by the framing page (see embed.js) lives in
 * memory only; without one, an anonymous session token from POST /api/v1/anon_session
 * is kept (store.js) so a reload keeps the same principal. Tokens only ever
 * travel in the Authorization header, never in a URL.
 */

import * as store from './store.js';

export const API = '/api/v1';
const TOKEN_KEY = 'relay.magic.anon_token';      // sessionStorage: {token, expiresAtMs}
const TOKEN_MARGIN_MS = 60 * 1000;               // renew a token this long before it expires

export class RelayError extends Error {
  constructor(code, message, extra = {}) {
    super(message);
    this.code = code;
    this.status = extra.status || 0;
    this.retryAfter = extra.retryAfter || 0;
  }
}

export function describe(err) {
  if (err instanceof RelayError) {
    const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : '';
    return `${err.message} (${err.code})${wait}`;
  }
  if (err instanceof TypeError) return 'Network error: the server could not be reached.';
  return (err && err.message) || String(err);
}

/** A non-2xx answer as a RelayError, from the JSON error shape {"error": {"code", "message"}}. */
export async function httpError(res) {
  let code = `http_${res.status}`;
  let message = res.statusText || 'Request failed';
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch (_) { /* not JSON: keep the status line */ }
  const retryAfter = parseInt(res.headers.get('Retry-After') || '', 10) || 0;
  return new RelayError(code, message, { status: res.status, retryAfter });
}

export const bearer = (token) => ({ Authorization: `Bearer ${token}` });

// ---- credentials -------------------------------------------------------------------------

const creds = {
  user: null,          // a user JWT from the framing page: memory only
  minting: null,       // the pending mint, shared by concurrent callers
  onNewAnon: () => {}, // told when a new anonymous principal replaces the old one
};

export function onNewAnonymousPrincipal(callback) {
  creds.onNewAnon = callback;
}

export function setUserToken(token) {
  creds.user = token;
}

export const userToken = () => creds.user;

export const principalKind = () => (creds.user ? 'user' : 'anon');

function storedAnon() {
  let saved = null;
  try { saved = JSON.parse(store.get(TOKEN_KEY) || 'null'); } catch (_) { /* corrupt: mint another */ }
  if (saved && typeof saved.token === 'string' && saved.expiresAtMs - TOKEN_MARGIN_MS > Date.now()) {
    return saved.token;
  }
  return null;
}

function storeAnon(record) {
  store.set(TOKEN_KEY, JSON.stringify(record));
}

/** Forget the credential that was refused: the user's (back to anonymous) or the anonymous one. */
export function forgetToken(token) {
  if (creds.user && token === creds.user) {
    creds.user = null;
    return;
  }
  store.remove(TOKEN_KEY);
}

/** expires_at is epoch seconds; an ISO date or expires_in are accepted too. */
function expiryMs(body) {
  const at = body.expires_at;
  if (typeof at === 'number' && Number.isFinite(at)) return at < 1e12 ? at * 1000 : at;
  if (typeof at === 'string') {
    const ms = /^\d+$/.test(at) ? Number(at) * 1000 : Date.parse(at);
    if (Number.isFinite(ms)) return ms;
  }
  if (typeof body.expires_in === 'number') return Date.now() + body.expires_in * 1000;
  return Date.now() + 5 * 60 * 1000;
}

async function mintAnon() {
  const res = await fetch(`${API}/anon_session`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: '{}',
    cache: 'no-store',
    credentials: 'same-origin',
  });
  if (!res.ok) throw await httpError(res);
  const body = await res.json();
  if (!body || typeof body.token !== 'string') throw new RelayError('bad_response', 'No session token was returned');
  storeAnon({ token: body.token, expiresAtMs: expiryMs(body) });
  creds.onNewAnon();  // a new principal: earlier conversations are no longer ours
  return body.token;
}

/** The token to send: the user's when signed in, else the anonymous one (minted when needed). */
export function getToken() {
  if (creds.user) return Promise.resolve(creds.user);
  const token = storedAnon();
  if (token) return Promise.resolve(token);
  if (!creds.minting) creds.minting = mintAnon().finally(() => { creds.minting = null; });
  return creds.minting;
}

// ---- JSON calls ----------------------------------------------------------------------------

/** An authenticated JSON call; one retry with a fresh token after a 401. Returns the parsed body or null. */
export async function call(method, path) {
  for (let attempt = 0; ; attempt += 1) {
    const token = await getToken();
    const res = await fetch(`${API}${path}`, {
      method,
      headers: { ...bearer(token), Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'same-origin',
    });
    if (res.status === 401 && attempt === 0 && token !== creds.user) {
      forgetToken(token);
      continue;
    }
    if (!res.ok) throw await httpError(res);
    return res.status === 204 ? null : res.json();
  }
}

export async function loadModels() {
  const res = await fetch(`${API}/models`, { headers: { Accept: 'application/json' }, cache: 'no-store' });
  if (!res.ok) throw await httpError(res);
  return (((await res.json()) || {}).models || []).filter((m) => m && typeof m.id === 'string');
}

export const listConversations = () => call('GET', '/conversations').then((body) => body.conversations || []);
export const readConversation = (id) => call('GET', `/conversations/${encodeURIComponent(id)}`);
export const deleteConversation = (id) => call('DELETE', `/conversations/${encodeURIComponent(id)}`);
