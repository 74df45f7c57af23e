/*
 * Relay's chat widget on any site, with one line:
 *
 *   <script src="https://relay.example/static/magic/embed.js" async
 *           data-title="Ask us" data-model="gpt-4o-mini" data-position="left" data-open="true"></script>
 *
 * (every data- attribute is optional: title "Chat", the server's default model, position
 * "right", closed on load). It adds a launcher button in a corner and a panel holding an
 * iframe of Relay's /widget page, so the host page's CSS and scripts cannot reach into the
 * chat and every API call stays same-origin inside the frame. The launcher lives in a
 * shadow root styled only by embed.css (a stylesheet served by Relay): no inline code or
 * styles, so a host page with a strict CSP needs only
 *   script-src, style-src and frame-src https://relay.example.
 * Relay must list the host's origin in ALLOWED_ORIGINS, or the browser refuses the frame.
 *
 * Signing a user in: RelayWidget.signIn(userJwt) (or RelayWidget.signOut()). The token is
 * kept in memory and handed to the frame with postMessage, addressed to Relay's origin only;
 * the protocol is described in frame.js. Where the browser denies the frame its own
 * sessionStorage (third-party storage blocked), this page keeps the widget's anonymous
 * session and its reply in progress in its sessionStorage, for this tab only.
 * Also RelayWidget.open(), .close(), .toggle().
 * The host hears `relaywidget:auth` events on document (detail.state: "user", "anonymous"
 * or "refused").
 */
(() => {
  'use strict';

  const script = document.currentScript || document.querySelector('script[src$="/static/magic/embed.js"]');
  if (!script || window.RelayWidget) return;  // once per page
  const relay = new URL(script.src, window.location.href).origin;
  const options = script.dataset;
  const title = (options.title || 'Chat').trim().slice(0, 60) || 'Chat';
  const position = options.position === 'left' ? 'left' : 'right';
  const openOnLoad = options.open === '' || options.open === 'true';

  const STORE_KEY = 'relay.embed.store';  // the widget's copy when its own frame may not store (frame.js)
  const state = { frame: null, ready: false, token: undefined, wantFocus: false };

  function kept() {
    try { return JSON.parse(window.sessionStorage.getItem(STORE_KEY) || 'null'); } catch (_) { return null; }
  }

  function keep(data) {
    try { window.sessionStorage.setItem(STORE_KEY, JSON.stringify(data)); } catch (_) { /* this tab forgets */ }
  }

  function el(tag, className) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    return node;
  }

  const host = el('div', 'relay-embed');
  const root = host.attachShadow({ mode: 'open' });
  const stylesheet = el('link');
  stylesheet.rel = 'stylesheet';
  stylesheet.href = `${relay}/static/magic/embed.css`;
  const wrap = el('div', `wrap ${position}`);
  wrap.hidden = true;  // shown once embed.css has loaded: never an unstyled flash
  stylesheet.addEventListener('load', () => { wrap.hidden = false; });

  const launcher = el('button', 'launcher');
  launcher.type = 'button';
  launcher.textContent = title;
  launcher.setAttribute('aria-expanded', 'false');
  launcher.setAttribute('aria-controls', 'relay-panel');
  const panel = el('div', 'panel');
  panel.id = 'relay-panel';
  panel.setAttribute('role', 'region');
  panel.setAttribute('aria-label', title);
  panel.hidden = true;
  wrap.append(panel, launcher);
  root.append(stylesheet, wrap);

  function post(message) {
    if (state.frame && state.ready) state.frame.contentWindow.postMessage(message, relay);
  }

  function frame() {
    if (state.frame) return state.frame;
    const url = new URL('/widget', relay);
    url.searchParams.set('title', title);
    if (options.model) url.searchParams.set('model', options.model);
    const iframe = el('iframe');
    iframe.src = url.href;
    iframe.title = `${title} (chat)`;
    iframe.allow = 'clipboard-write';
    iframe.referrerPolicy = 'origin';  // the widget can tell its framing origin even without ancestorOrigins
    panel.append(iframe);
    state.frame = iframe;
    return iframe;
  }

  /** Show the panel; `focus` moves the keyboard into the chat (not when opened on load). */
  function open(focus = true) {
    frame();
    panel.hidden = false;
    launcher.setAttribute('aria-expanded', 'true');
    if (!focus) return;
    state.wantFocus = true;
    state.frame.focus();
    if (state.ready) post({ type: 'relay:focus' });
  }

  function close() {
    panel.hidden = true;
    launcher.setAttribute('aria-expanded', 'false');
    state.wantFocus = false;
    launcher.focus();
  }

  const toggle = () => (panel.hidden ? open(true) : close());

  function setToken(token) {
    state.token = token;
    post({ type: 'relay:auth', token });
  }

  window.addEventListener('message', (event) => {
    if (event.origin !== relay || !state.frame || event.source !== state.frame.contentWindow) return;
    const data = event.data;
    if (!data || typeof data !== 'object') return;
    if (data.type === 'relay:ready') {
      state.ready = true;
      post({ type: 'relay:restore', data: kept() });
      if (state.token !== undefined) post({ type: 'relay:auth', token: state.token });
      if (state.wantFocus && !panel.hidden) post({ type: 'relay:focus' });
    } else if (data.type === 'relay:store') {
      if (data.data && typeof data.data === 'object') keep(data.data);
    } else if (data.type === 'relay:close') {
      close();
    } else if (data.type === 'relay:auth-state') {
      document.dispatchEvent(new CustomEvent('relaywidget:auth', { detail: { state: String(data.state) } }));
    }
  });

  launcher.addEventListener('click', toggle);
  root.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !panel.hidden) close();
  });

  window.RelayWidget = Object.freeze({
    open: () => open(true),
    close,
    toggle,
    signIn: (token) => setToken(String(token)),
    signOut: () => setToken(null),
  });

  const mount = () => {
    document.body.append(host);
    if (openOnLoad) open(false);
  };
  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount);
})();
