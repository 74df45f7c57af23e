/*
 * One reply as Server-Sent Events over fetch() (docs/api.md, "Streaming a reply").
 *
 * fetch() rather than EventSource, because EventSource cannot send the
 * Authorization header. A reply is a plain object `s`:
 *   {streamId, lastId, body, token, finished, controller, onEvent(name, data, id)}
 * Every event but heartbeats has an increasing id; one at or below `lastId` is a
 * repeat after a reconnect and is dropped, so nothing is shown twice.
 */
import { API, RelayError, bearer, forgetToken, getToken, httpError, principalKind } from './api.js';

const RECONNECT_TRIES = 5;                      // per drop; the budget resets when events arrive
const RECONNECT_BASE_MS = 500;                  // 500, 1000, 2000, 4000, 8000 ms (±20 %)
const RETRY_AFTER_CAP_MS = 30 * 1000;
const IDLE_TIMEOUT_MS = 35 * 1000;              // heartbeats come every 10 s: silence means a dead link
const STREAM_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
export const STREAM_ID = /^[A-Za-z0-9_-]{8,64}$/;
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** 22 characters of [A-Za-z0-9_-]; 64 symbols, so `byte & 63` is uniform. */
export function newStreamId() {
  const bytes = crypto.getRandomValues(new Uint8Array(22));
  return Array.from(bytes, (b) => STREAM_ID_ALPHABET[b & 63]).join('');
}

/** Feeds decoded text; calls onEvent({id, event, data}) for each complete frame. */
function sseParser(onEvent) {
  let buffer = '';
  let id = null;
  let event = '';
  let data = [];

  function line(text) {
    if (text === '') {                         // a blank line ends the frame
      if (data.length) onEvent({ id, event: event || 'message', data: data.join('\n') });
      id = null;
      event = '';
      data = [];
      return;
    }
    if (text[0] === ':') return;               // comment
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'id') id = value;
    else if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    // `retry:` is read and ignored: our own backoff (from 500 ms) applies.
  }

  return {
    push(chunk) {
      buffer += chunk;
      let start = 0;
      for (let i = 0; i < buffer.length; i += 1) {
        const c = buffer[i];
        if (c !== '\n' && c !== '\r') continue;
        if (c === '\r' && i + 1 === buffer.length) break;  // maybe half of a CRLF: wait for more
        line(buffer.slice(start, i));
        if (c === '\r' && buffer[i + 1] === '\n') i += 1;
        start = i + 1;
      }
      buffer = buffer.slice(start);
    },
  };
}

/** Aborts the connection when nothing at all (not even a heartbeat) arrives for a while. */
function watchdog(controller) {
  let timer = 0;
  const kick = () => {
    clearTimeout(timer);
    timer = setTimeout(() => controller.abort(), IDLE_TIMEOUT_MS);
  };
  kick();
  return { kick, stop: () => clearTimeout(timer) };
}

function handleFrame(s, frame) {
  let id = null;
  if (frame.id !== null) {
    if (!/^\d{1,15}$/.test(frame.id)) return;
    id = Number(frame.id);
    if (id <= s.lastId) return;                 // a repeat after a reconnect
  }
  let data;
  try { data = JSON.parse(frame.data); } catch (_) { return; }
  if (!data || typeof data !== 'object') return;
  if (id !== null) s.lastId = id;
  if (frame.event === 'done' || frame.event === 'error') s.finished = true;
  s.onEvent(frame.event, data, id);
}

async function readEvents(s, res) {
  const type = res.headers.get('Content-Type') || '';
  if (!type.startsWith('text/event-stream')) {
    throw new RelayError('bad_response', `Expected an event stream, got ${type || 'no content type'}`);
  }
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const parser = sseParser((frame) => handleFrame(s, frame));
  const dog = watchdog(s.controller);
  try {
    while (!s.finished) {
      const { value, done } = await reader.read();
      if (done) break;
      dog.kick();
      parser.push(decoder.decode(value, { stream: true }));
    }
  } finally {
    dog.stop();
    if (s.finished) reader.cancel().catch(() => {});
  }
}

/** fetch() with an AbortController the watchdog (or Stop, or a new chat) can use. */
function connect(s, url, init) {
  s.controller = new AbortController();
  const dog = watchdog(s.controller);
  return fetch(url, { ...init, signal: s.controller.signal, cache: 'no-store', credentials: 'same-origin' })
    .finally(() => dog.stop());
}

function postStream(s) {
  return connect(s, `${API}/stream`, {
    method: 'POST',
    headers: { ...bearer(s.token), 'Content-Type': 'application/json', Accept: 'text/event-stream' },
    body: s.body,
  });
}

/**
 * Start the stream. An anonymous token answered with 401 is replaced once (a new
 * principal, so `beforeRetry` may drop the conversation from the body).
 */
export async function start(s, buildBody, beforeRetry) {
  for (let attempt = 0; ; attempt += 1) {
    s.token = await getToken();
    s.principal = principalKind();
    s.body = JSON.stringify(buildBody());
    const res = await postStream(s);
    if (res.status === 401 && attempt === 0 && s.principal === 'anon') {
      forgetToken(s.token);
      beforeRetry();
      continue;
    }
    if (!res.ok) throw await httpError(res);
    return res;
  }
}

/**
 * Attach again: before any event arrived, the same POST (the stream_id makes it attach
 * instead of starting a second generation); after, GET /stream/<id> with Last-Event-ID.
 */
export function attach(s) {
  if (s.lastId === 0) return postStream(s);
  return connect(s, `${API}/stream/${encodeURIComponent(s.streamId)}`, {
    method: 'GET',
    headers: { ...bearer(s.token), 'Last-Event-ID': String(s.lastId), Accept: 'text/event-stream' },
  });
}

/** Read the stream to its `done` or `error`, reconnecting with backoff when the link drops. */
export async function follow(s, first, onStatus) {
  let res = first;
  let tries = 0;
  let wait = 0;
  for (;;) {
    if (res) {
      if (res.status === 204) {                  // nothing after our last id: the reply had ended
        s.finished = true;
        s.onEvent('ended', {}, null);
        return;
      }
      const before = s.lastId;
      try {
        await readEvents(s, res);
      } catch (err) {
        if (err instanceof RelayError) throw err;
        // The reader threw (network error or watchdog abort): resume below.
      }
      if (s.finished || s.abandoned) return;
      if (s.lastId > before) tries = 0;
      res = null;
    }
    if (tries >= RECONNECT_TRIES) {
      throw new RelayError('connection_lost', 'The connection was lost and could not be resumed; the reply may be incomplete');
    }
    tries += 1;
    const backoff = RECONNECT_BASE_MS * 2 ** (tries - 1) * (0.8 + 0.4 * Math.random());
    onStatus(`Connection lost; reconnecting (${tries}/${RECONNECT_TRIES})…`);
    await sleep(Math.max(backoff, wait));
    if (s.abandoned) return;
    wait = 0;
    let answer;
    try {
      answer = await attach(s);
    } catch (_) {
      continue;                                  // still offline: try again
    }
    if (answer.ok) {
      res = answer;
      continue;
    }
    const err = await httpError(answer);
    if (!RETRYABLE.has(answer.status)) throw err; // 401/403/404: nothing we may resume
    wait = Math.min(err.retryAfter * 1000, RETRY_AFTER_CAP_MS);
  }
}

/** Ask the server to stop the reply; it then ends the stream with `done` (cancelled). */
export async function cancel(s) {
  const res = await fetch(`${API}/stream/${encodeURIComponent(s.streamId)}`, {
    method: 'DELETE',
    headers: bearer(s.token),
    cache: 'no-store',
    credentials: 'same-origin',
  });
  if (!res.ok) throw await httpError(res);
}
