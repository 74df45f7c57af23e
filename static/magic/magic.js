/*
 * Relay chat widget. Plain JavaScript, no build step, no dependencies.
 *
 * Runs under a strict Content-Security-Policy (script-src 'self'; style-src 'self'):
 * no inline code or styles, no eval. Model output is only ever rendered as text
 * (Text nodes / textContent), never as HTML.
 *
 * The HTTP API it speaks: docs/api.md, "Sessions and models" and "Streaming".
 */
(() => {
  'use strict';

  const API = '/api/v1';
  const TOKEN_KEY = 'relay.magic.anon_token';     // sessionStorage: {token, expiresAtMs}
  const TOKEN_MARGIN_MS = 60 * 1000;              // renew a token this long before it expires
  const RECONNECT_TRIES = 5;                      // per drop; the budget resets when events arrive
  const RECONNECT_BASE_MS = 500;                  // 500, 1000, 2000, 4000, 8000 ms (±20 %)
  const RETRY_AFTER_CAP_MS = 30 * 1000;
  const IDLE_TIMEOUT_MS = 35 * 1000;              // heartbeats come every 10 s: silence means a dead link
  const STREAM_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';

  const $ = (id) => document.getElementById(id);
  const ui = {
    transcript: $('transcript'),
    status: $('status'),
    model: $('model'),
    form: $('composer'),
    message: $('message'),
    send: $('send'),
    stop: $('stop'),
    newChat: $('new-chat'),
  };

  const state = {
    ready: false,
    conversationId: null,  // set by the first reply's `stream` event; continues the conversation
    active: null,          // the stream being received, if any
    memoryToken: null,     // fallback when sessionStorage is unavailable
    minting: null,         // the pending mint, shared by concurrent callers
  };

  class RelayError extends Error {
    constructor(code, message, extra = {}) {
      super(message);
      this.code = code;
      this.status = extra.status || 0;
      this.retryAfter = extra.retryAfter || 0;
    }
  }

  // ---- small helpers -----------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function setStatus(text) {
    ui.status.textContent = text;
  }

  function describe(err) {
    if (err instanceof RelayError) {
      const wait = err.retryAfter ? ` Try again in ${err.retryAfter} s.` : '';
      return `${err.message} (${err.code})${wait}`;
    }
    if (err instanceof TypeError) return 'Network error: the server could not be reached.';
    return (err && err.message) || String(err);
  }

  /** A non-2xx answer as a RelayError, from the JSON error shape {"error": {"code", "message"}}. */
  async function httpError(res) {
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

  /** 22 characters of [A-Za-z0-9_-]; 64 symbols, so `byte & 63` is uniform. */
  function newStreamId() {
    const bytes = crypto.getRandomValues(new Uint8Array(22));
    return Array.from(bytes, (b) => STREAM_ID_ALPHABET[b & 63]).join('');
  }

  // ---- anonymous session token (sessionStorage, never in a URL) ----------------------

  function storedToken() {
    let saved = state.memoryToken;
    try {
      const raw = sessionStorage.getItem(TOKEN_KEY);
      if (raw) saved = JSON.parse(raw);
    } catch (_) { /* storage blocked or corrupt: use the in-memory copy */ }
    if (saved && typeof saved.token === 'string' && saved.expiresAtMs - TOKEN_MARGIN_MS > Date.now()) {
      return saved.token;
    }
    return null;
  }

  function storeToken(record) {
    state.memoryToken = record;
    try { sessionStorage.setItem(TOKEN_KEY, JSON.stringify(record)); } catch (_) { /* memory only */ }
  }

  function forgetToken() {
    state.memoryToken = null;
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* nothing stored */ }
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

  async function mintToken() {
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
    storeToken({ token: body.token, expiresAtMs: expiryMs(body) });
    // A new token is a new principal: an earlier conversation is no longer ours.
    state.conversationId = null;
    return body.token;
  }

  function getToken() {
    const token = storedToken();
    if (token) return Promise.resolve(token);
    if (!state.minting) state.minting = mintToken().finally(() => { state.minting = null; });
    return state.minting;
  }

  const bearer = (token) => ({ Authorization: `Bearer ${token}` });

  // ---- models ------------------------------------------------------------------------

  async function loadModels() {
    const res = await fetch(`${API}/models`, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    if (!res.ok) throw await httpError(res);
    const models = ((await res.json()) || {}).models || [];
    const options = [];
    let preferred = '';
    for (const m of models) {
      if (!m || typeof m.id !== 'string') continue;
      options.push(new Option(m.provider ? `${m.id} (${m.provider})` : m.id, m.id));
      if (m.default) preferred = m.id;
    }
    if (!options.length) throw new RelayError('no_models', 'No models are available');
    ui.model.replaceChildren(...options);
    ui.model.value = preferred || options[0].value;
  }

  function modelsUnavailable() {
    // The field is optional: without a list, the server picks its default model.
    ui.model.replaceChildren(new Option('Server default', ''));
  }

  // ---- transcript ----------------------------------------------------------------------

  function scrollDown() {
    ui.transcript.scrollTop = ui.transcript.scrollHeight;
  }

  function addTurn(role, label) {
    const hint = ui.transcript.querySelector('.hint');
    if (hint) hint.remove();
    const article = el('article', `msg ${role}`);
    const who = el('span', 'who', label);
    const body = el('div', 'body');
    article.append(who, body);
    ui.transcript.append(article);
    scrollDown();
    return { article, who, body };
  }

  /** The assistant's reply: text appended chunk by chunk to one Text node (never parsed as HTML). */
  function replyView() {
    const turn = addTurn('assistant', 'Assistant');
    turn.body.classList.add('reply');
    const text = document.createTextNode('');
    turn.body.append(text);
    const line = (className, content) => {
      const p = el('p', className, content);
      turn.article.append(p);
      scrollDown();
      return p;
    };
    return {
      setModel(model) { turn.who.textContent = `Assistant · ${model}`; },
      append(content) { text.appendData(content); scrollDown(); },
      meta(content) { line('meta', content); },
      error(content) { line('error', content).setAttribute('role', 'alert'); },
    };
  }

  function formatUsd(value) {
    return `$${value < 0.01 ? value.toFixed(6) : value.toFixed(4)}`;
  }

  const FINISH = {
    stop: 'Finished',
    length: 'Stopped at the token limit',
    cost_cap: 'Stopped at the cost cap',
    cancelled: 'Stopped',
  };

  function describeDone(d) {
    const parts = [`${FINISH[d.finish_reason] || 'Finished'} (${d.finish_reason})`];
    if (d.usage) parts.push(`${d.usage.prompt_tokens} prompt + ${d.usage.completion_tokens} completion tokens`);
    if (typeof d.cost_usd === 'number') parts.push(formatUsd(d.cost_usd));
    if (typeof d.ttft_ms === 'number') parts.push(`first token ${Math.round(d.ttft_ms)} ms`);
    if (typeof d.duration_ms === 'number') parts.push(`total ${(d.duration_ms / 1000).toFixed(1)} s`);
    return parts.join(' · ');
  }

  function describeStreamError(d) {
    const wait = d.retry_after ? ` Try again in ${d.retry_after} s.` : '';
    return `Error: ${d.detail || 'the reply failed'} (${d.error_code || 'error'})${wait}`;
  }

  // ---- Server-Sent Events over fetch() -------------------------------------------------

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

  function handleEvent(s, ev) {
    if (ev.id !== null) {
      const n = Number(ev.id);
      if (!Number.isSafeInteger(n) || n <= s.lastId) return;   // duplicate after a reconnect
      s.lastId = n;
    }
    let data;
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    if (!data || typeof data !== 'object') return;
    switch (ev.event) {
      case 'stream':
        if (data.conversation_id) state.conversationId = data.conversation_id;
        if (data.model) s.view.setModel(data.model);
        setStatus('Receiving the reply…');
        break;
      case 'message_chunk':
        if (typeof data.content === 'string') s.view.append(data.content);
        break;
      case 'done':
        s.finished = true;
        s.view.meta(describeDone(data));
        break;
      case 'error':
        s.finished = true;
        s.view.error(describeStreamError(data));
        break;
      default:                                   // heartbeat, or an event this version does not know
        break;
    }
  }

  async function readEvents(s, res) {
    const type = res.headers.get('Content-Type') || '';
    if (!type.startsWith('text/event-stream')) {
      throw new RelayError('bad_response', `Expected an event stream, got ${type || 'no content type'}`);
    }
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const parser = sseParser((ev) => handleEvent(s, ev));
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

  /** fetch() with an AbortController the watchdog can use. */
  function connect(s, url, init) {
    s.controller = new AbortController();
    const dog = watchdog(s.controller);
    return fetch(url, { ...init, signal: s.controller.signal, cache: 'no-store', credentials: 'same-origin' })
      .finally(() => dog.stop());
  }

  function postStream(s, token) {
    return connect(s, `${API}/stream`, {
      method: 'POST',
      headers: { ...bearer(token), 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: s.body,
    });
  }

  /**
   * Start the stream. A 401 means the stored token is no longer good: mint a new one
   * and try once more (a new principal, so the conversation starts afresh).
   */
  async function start(s, message, model) {
    for (let attempt = 0; ; attempt += 1) {
      const hadConversation = state.conversationId;
      const token = await getToken();
      if (hadConversation && !state.conversationId) {
        s.view.meta('Your session was renewed, so this message starts a new conversation.');
      }
      const body = { message, stream_id: s.streamId };
      if (model) body.model = model;
      if (state.conversationId) body.conversation_id = state.conversationId;
      s.body = JSON.stringify(body);
      s.token = token;
      const res = await postStream(s, token);
      if (res.status === 401 && attempt === 0) {
        forgetToken();
        continue;
      }
      if (!res.ok) throw await httpError(res);
      return res;
    }
  }

  /**
   * Resume after a drop. Before any event arrived, the same POST again (the stream_id
   * makes it attach instead of starting a second generation); after, attach with
   * GET /stream/<id> and Last-Event-ID.
   */
  function reconnect(s) {
    if (s.lastId === 0) return postStream(s, s.token);
    return connect(s, `${API}/stream/${encodeURIComponent(s.streamId)}`, {
      method: 'GET',
      headers: { ...bearer(s.token), 'Last-Event-ID': String(s.lastId), Accept: 'text/event-stream' },
    });
  }

  const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);

  /** Read the stream to its `done` or `error`, reconnecting with backoff when the link drops. */
  async function follow(s, first) {
    let res = first;
    let tries = 0;
    let wait = 0;
    for (;;) {
      if (res) {
        const before = s.lastId;
        try {
          await readEvents(s, res);
        } catch (err) {
          if (err instanceof RelayError) throw err;
          // The reader threw (network error or watchdog abort): resume below.
        }
        if (s.finished) return;
        if (s.lastId > before) tries = 0;
        res = null;
      }
      if (tries >= RECONNECT_TRIES) {
        throw new RelayError('connection_lost', 'The connection was lost and could not be resumed; the reply may be incomplete');
      }
      tries += 1;
      const backoff = RECONNECT_BASE_MS * 2 ** (tries - 1) * (0.8 + 0.4 * Math.random());
      setStatus(`Connection lost; reconnecting (${tries}/${RECONNECT_TRIES})…`);
      await sleep(Math.max(backoff, wait));
      wait = 0;
      let answer;
      try {
        answer = await reconnect(s);
      } catch (_) {
        continue;                                  // still offline: try again
      }
      if (answer.status === 204) {                 // nothing more to send
        s.finished = true;
        s.view.meta('The reply had already ended.');
        return;
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

  // ---- user actions --------------------------------------------------------------------

  function setBusy(busy) {
    ui.send.disabled = busy || !state.ready;
    ui.stop.disabled = !busy;
    ui.newChat.disabled = busy;
    ui.model.disabled = busy || !state.ready;
    ui.transcript.setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  async function send(message) {
    const s = {
      streamId: newStreamId(),
      lastId: 0,
      finished: false,
      stopRequested: false,
      token: null,
      body: null,
      controller: null,
      view: null,
    };
    addTurn('user', 'You').body.textContent = message;
    s.view = replyView();
    state.active = s;
    setBusy(true);
    setStatus('Sending…');
    let outcome = 'Ready.';
    try {
      const res = await start(s, message, ui.model.value);
      await follow(s, res);
    } catch (err) {
      s.view.error(describe(err));
      outcome = 'The last message failed.';
    } finally {
      state.active = null;
      setBusy(false);
      setStatus(outcome);
      const focused = document.activeElement;
      if (!focused || focused === document.body || focused.disabled) ui.message.focus();
    }
  }

  async function stop() {
    const s = state.active;
    if (!s || s.stopRequested || !s.token) return;
    s.stopRequested = true;
    ui.stop.disabled = true;
    setStatus('Stopping…');
    try {
      const res = await fetch(`${API}/stream/${encodeURIComponent(s.streamId)}`, {
        method: 'DELETE',
        headers: bearer(s.token),
        cache: 'no-store',
        credentials: 'same-origin',
      });
      if (!res.ok) throw await httpError(res);
      // The server ends the stream with `done` (cancelled), which the reader shows.
    } catch (err) {
      s.stopRequested = false;
      if (state.active === s) ui.stop.disabled = false;
      setStatus(`Could not stop: ${describe(err)}`);
    }
  }

  function newChat() {
    if (state.active) return;
    state.conversationId = null;
    ui.transcript.replaceChildren(el('p', 'hint', 'New conversation. Replies are shown as plain text.'));
    setStatus('New conversation.');
    ui.message.focus();
  }

  ui.form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (state.active || !state.ready) return;
    const message = ui.message.value;
    if (!message.trim()) {
      setStatus('Type a message first.');
      ui.message.focus();
      return;
    }
    if (document.activeElement === ui.send) ui.message.focus();
    ui.message.value = '';
    send(message);
  });

  ui.message.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ui.form.requestSubmit();
    }
  });

  ui.stop.addEventListener('click', stop);
  ui.newChat.addEventListener('click', newChat);

  // ---- start -----------------------------------------------------------------------------

  function registerServiceWorker() {
    if (!('serviceWorker' in navigator) || !window.isSecureContext) return;
    navigator.serviceWorker.register('sw.js').catch(() => { /* offline caching is optional */ });
  }

  async function init() {
    registerServiceWorker();
    setBusy(false);
    const [session, models] = await Promise.allSettled([getToken(), loadModels()]);
    const problems = [];
    if (models.status === 'rejected') {
      modelsUnavailable();
      problems.push(`models could not be loaded: ${describe(models.reason)}`);
    }
    if (session.status === 'rejected') {
      problems.push(`no session yet (${describe(session.reason)}); sending will try again`);
    }
    state.ready = true;
    setBusy(false);
    setStatus(problems.length ? `Ready, but ${problems.join('; ')}.` : 'Ready.');
  }

  init();
})();
