/*
 * Where the widget keeps what must survive a reload (the anonymous session token, the
 * reply being received): sessionStorage when the browser allows it. In a frame on
 * another site, browsers that block third-party storage deny it; there the host page
 * keeps a copy for us (embed.js, in its own sessionStorage, for this tab only), sent
 * with `relay:store` and handed back with `relay:restore` when the frame loads.
 * A user's JWT is never stored anywhere.
 */

function sessionStore() {
  try {
    const probe = 'relay.magic.probe';
    window.sessionStorage.setItem(probe, '1');
    window.sessionStorage.removeItem(probe);
    return window.sessionStorage;
  } catch (_) {
    return null;                               // denied (third-party frame) or disabled
  }
}

const local = sessionStore();
const memory = new Map();
let mirror = null;                             // sends the whole copy to the host page

export const persistent = () => Boolean(local);

export function get(key) {
  if (local) return local.getItem(key);
  return memory.has(key) ? memory.get(key) : null;
}

export function set(key, value) {
  if (local) {
    try {
      local.setItem(key, value);
      return;
    } catch (_) { /* full: keep it in memory */ }
  }
  memory.set(key, String(value));
  if (mirror) mirror(Object.fromEntries(memory));
}

export function remove(key) {
  if (local) local.removeItem(key);
  if (memory.delete(key) && mirror) mirror(Object.fromEntries(memory));
}

/** Keep the copy with the host page: `send(copy)` on each change; `restored` is what it kept. */
export function useHost(send, restored) {
  if (local) return;
  if (restored && typeof restored === 'object') {
    for (const [key, value] of Object.entries(restored)) {
      if (typeof value === 'string' && key.startsWith('relay.magic.')) memory.set(key, value);
    }
  }
  mirror = send;
}
