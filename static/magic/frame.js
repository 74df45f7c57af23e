/*
 * The widget's side of the embed protocol (the host's side is embed.js).
 *
 * The page at /widget may be framed only by the origins in ALLOWED_ORIGINS (its CSP
 * `frame-ancestors`); the server writes the same list into
 * <meta name="relay-embed-origins">. Messages are plain objects with a `type`:
 *
 *   host -> widget  {type: "relay:auth", token: "<user JWT>"}   sign in (token: null signs out)
 *                   {type: "relay:focus"}                        focus the message box
 *                   {type: "relay:restore", data}                answers relay:ready: the last relay:store
 *   widget -> host  {type: "relay:ready"}                        listening; (re)send the token now
 *                   {type: "relay:store", data}                  keep this for the tab (see store.js)
 *                   {type: "relay:auth-state", state}            "user", "anonymous" or "refused"
 *                   {type: "relay:close"}                        the reader asked to close the chat
 *
 * A message is accepted only from the window that framed the widget (event.source is
 * window.parent), only with that window's origin, and only if that origin is allowed.
 * Messages to the host go to that origin alone, never "*".
 */

const RESTORE_WAIT_MS = 1500;                  // a host page without embed.js never answers relay:ready
const JWT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const MAX_TOKEN_LENGTH = 8192;

function allowedOrigins() {
  const meta = document.querySelector('meta[name="relay-embed-origins"]');
  return (meta ? meta.content : '').split(/\s+/).filter(Boolean);
}

/** The origin of the page that framed this one, if it is allowed; else null. */
function framingOrigin() {
  if (window.parent === window) return null;
  let origin = null;
  if (window.location.ancestorOrigins && window.location.ancestorOrigins.length) {
    origin = window.location.ancestorOrigins[0];
  } else if (document.referrer) {
    try { origin = new URL(document.referrer).origin; } catch (_) { origin = null; }
  }
  return origin && allowedOrigins().includes(origin) ? origin : null;
}

/**
 * Start listening and tell the host (relay:ready). `handlers.auth(token|null)` and
 * `handlers.focus()` are called for accepted messages. Returns {embedded, host,
 * post(message), restored()}: restored() resolves to the host's copy (or null).
 */
export function connectToHost(handlers) {
  const host = framingOrigin();
  const post = (message) => {
    if (host) window.parent.postMessage(message, host);
  };
  let restore = () => {};
  const restored = new Promise((resolve) => {
    restore = resolve;
    setTimeout(() => resolve(null), host ? RESTORE_WAIT_MS : 0);
  });
  if (host) {
    window.addEventListener('message', (event) => {
      if (event.source !== window.parent || event.origin !== host) return;
      const data = event.data;
      if (!data || typeof data !== 'object') return;
      if (data.type === 'relay:auth') {
        const token = data.token;
        if (token === null) handlers.auth(null);
        else if (typeof token === 'string' && token.length <= MAX_TOKEN_LENGTH && JWT.test(token)) handlers.auth(token);
      } else if (data.type === 'relay:focus') {
        handlers.focus();
      } else if (data.type === 'relay:restore') {
        restore(data.data && typeof data.data === 'object' ? data.data : null);
      }
    });
    post({ type: 'relay:ready' });
  }
  return { embedded: window.parent !== window, host, post, restored: () => restored };
}
