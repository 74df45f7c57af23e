/*
 * Relay chat widget. Plain JavaScript modules, no build step, no dependencies.
 *
 * Runs under a strict Content-Security-Policy (script-src 'self'; style-src 'self'):
 * no inline code or styles, no eval. Model output is rendered as Markdown with DOM
 * APIs (markdown.js), never as HTML.
 *
 * A reply being received is saved (store.js: sessionStorage, or the host page's copy)
 * with its stream id, last event id and the text so far: after a reload the widget shows that text and resumes after that id,
 * so nothing is repeated or lost. The HTTP API it speaks: docs/api.md.
 */
import * as api from './api.js';
import { connectToHost } from './frame.js';
import { historyPanel } from './history.js';
import { renderMarkdown } from './markdown.js';
import * as store from './store.js';
import { STREAM_ID, attach, cancel, follow, newStreamId, start } from './stream.js';

const PENDING_KEY = 'relay.magic.pending';  // sessionStorage: the reply being received
const RENDER_EVERY_MS = 40;                 // re-render a streaming reply at most this often
const FOLLOW_SLACK_PX = 32;                 // "at the bottom" within this distance

const $ = (id) => document.getElementById(id);
const ui = {
  title: $('title'), who: $('who'), close: $('close'), transcript: $('transcript'), status: $('status'),
  model: $('model'), form: $('composer'), message: $('message'), send: $('send'), stop: $('stop'),
  newChat: $('new-chat'),
};
const state = {
  ready: false,
  conversationId: null,  // set by a reply's `stream` event; the next message continues it
  active: null,          // the reply being received
  epoch: 0,              // bumped when the principal changes: older replies no longer set the conversation
  follow: true,          // keep the newest text in view (false once the reader scrolls up)
  countdown: 0,          // the 429 countdown's timer
  waiting: null,         // a user's reply to resume once the host signs the user in again
};
const params = new URLSearchParams(window.location.search);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function setStatus(text) {
  ui.status.textContent = text;
}

// ---- transcript --------------------------------------------------------------------------

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
  if (state.follow) scrollDown();
  return { article, who, body };
}

/** An assistant reply, re-rendered as Markdown as text arrives. */
function replyView(initial = '', model = '') {
  const turn = addTurn('assistant', model ? `Assistant · ${model}` : 'Assistant');
  turn.body.classList.add('reply');
  let text = initial;
  let timer = 0;
  const render = () => {
    timer = 0;
    turn.body.replaceChildren(renderMarkdown(text));
    if (state.follow) scrollDown();
  };
  const line = (className, content) => {
    const p = el('p', className, content);
    turn.article.append(p);
    if (state.follow) scrollDown();
    return p;
  };
  render();
  return {
    text: () => text,
    setModel(name) { turn.who.textContent = `Assistant · ${name}`; },
    append(content) {
      text += content;
      if (!timer) timer = setTimeout(render, RENDER_EVERY_MS);
    },
    flush() {
      if (timer) clearTimeout(timer);
      render();
    },
    meta(content) { line('meta', content); },
    error(content) { line('error', content).setAttribute('role', 'alert'); },
  };
}

function showMessages(messages) {
  for (const m of messages) {
    if (m.role === 'user') addTurn('user', 'You').body.textContent = m.content;
    else if (m.role === 'assistant') replyView(m.content, m.model || '');
  }
}

function clearTranscript(hint) {
  ui.transcript.replaceChildren(el('p', 'hint', hint));
  state.follow = true;
}

const FINISH = { stop: 'Finished', length: 'Stopped at the token limit', cost_cap: 'Stopped at the cost cap', cancelled: 'Stopped' };

function describeDone(d) {
  const parts = [`${FINISH[d.finish_reason] || 'Finished'} (${d.finish_reason})`];
  if (d.usage) parts.push(`${d.usage.prompt_tokens} prompt + ${d.usage.completion_tokens} completion tokens`);
  if (typeof d.cost_usd === 'number') parts.push(`$${d.cost_usd < 0.01 ? d.cost_usd.toFixed(6) : d.cost_usd.toFixed(4)}`);
  if (typeof d.ttft_ms === 'number') parts.push(`first token ${Math.round(d.ttft_ms)} ms`);
  if (typeof d.duration_ms === 'number') parts.push(`total ${(d.duration_ms / 1000).toFixed(1)} s`);
  return parts.join(' · ');
}

function describeStreamError(d) {
  const wait = d.retry_after ? ` Try again in ${d.retry_after} s.` : '';
  return `Error: ${d.detail || 'the reply failed'} (${d.error_code || 'error'})${wait}`;
}

// ---- the reply being received, saved for a reload -----------------------------------------

function savePending(s) {
  const record = {
    streamId: s.streamId, lastId: s.lastId, text: s.view.text(), message: s.message, body: s.body,
    conversationId: s.conversationId, principal: s.principal, model: s.model,
  };
  store.set(PENDING_KEY, JSON.stringify(record));
}

function clearPending() {
  store.remove(PENDING_KEY);
}

function loadPending() {
  try {
    const p = JSON.parse(store.get(PENDING_KEY) || 'null');
    if (p && STREAM_ID.test(p.streamId) && Number.isSafeInteger(p.lastId) && p.lastId >= 0
        && typeof p.text === 'string' && typeof p.message === 'string' && typeof p.body === 'string') return p;
  } catch (_) { /* corrupt: start afresh */ }
  clearPending();
  return null;
}

function onEvent(s, name, data) {
  switch (name) {
    case 'stream':
      if (typeof data.conversation_id === 'string') {
        s.conversationId = data.conversation_id;
        if (s.epoch === state.epoch) state.conversationId = data.conversation_id;
      }
      if (data.model) s.view.setModel(data.model);
      setStatus('Receiving the reply…');
      break;
    case 'message_chunk':
      if (typeof data.content === 'string') s.view.append(data.content);
      break;
    case 'done':
      s.view.flush();
      s.view.meta(describeDone(data));
      break;
    case 'error':
      s.view.flush();
      s.view.error(describeStreamError(data));
      break;
    case 'ended':
      s.view.meta('The reply had already ended.');
      break;
    default:
      return;                                  // heartbeat, or an event this version does not know
  }
  if (s.finished) clearPending();
  else savePending(s);
}

function newReply(fields) {
  const s = { lastId: 0, finished: false, token: null, body: null, controller: null, epoch: state.epoch, ...fields };
  s.onEvent = (name, data) => onEvent(s, name, data);
  return s;
}

// ---- sending, stopping, the 429 countdown ---------------------------------------------------

function setBusy(busy) {
  ui.send.disabled = busy || !state.ready || Boolean(state.countdown);
  ui.stop.disabled = !busy;
  ui.newChat.disabled = busy;
  ui.model.disabled = busy || !state.ready;
  ui.transcript.setAttribute('aria-busy', busy ? 'true' : 'false');
}

/** The status line counts down a 429's Retry-After; sending waits for it. */
function countdown(seconds) {
  clearInterval(state.countdown);
  let left = Math.max(1, seconds);
  const tick = () => {
    if (left <= 0) {
      clearInterval(state.countdown);
      state.countdown = 0;
      ui.status.setAttribute('aria-live', 'polite');
      setStatus('Ready. You can send again.');
      setBusy(Boolean(state.active));
      return;
    }
    setStatus(`Too many requests. You can send again in ${left} s.`);
    ui.status.setAttribute('aria-live', 'off');  // announce the wait once, not every second
    left -= 1;
  };
  state.countdown = setInterval(tick, 1000);
  tick();
}

async function run(s, opening) {
  state.active = s;
  setBusy(true);
  let outcome = 'Ready.';
  try {
    await follow(s, await opening(), setStatus);
  } catch (err) {
    s.view.flush();
    s.view.error(api.describe(err));
    if (!(err instanceof api.RelayError) || err.code !== 'connection_lost') clearPending();
    outcome = 'The last message failed.';
    if (err instanceof api.RelayError && err.status === 429) countdown(err.retryAfter || 1);
  } finally {
    if (state.active === s) state.active = null;
    setBusy(Boolean(state.active));
    if (!state.countdown) setStatus(s.abandoned ? 'New conversation.' : outcome);
    const focused = document.activeElement;
    if (!focused || focused === document.body || focused.disabled) ui.message.focus();
    if (conversations.shown()) conversations.refresh();
  }
}

function send(message) {
  const s = newReply({ streamId: newStreamId(), message, model: ui.model.value, conversationId: state.conversationId });
  addTurn('user', 'You').body.textContent = message;
  s.view = replyView();
  setStatus('Sending…');
  const body = () => {
    const b = { message, stream_id: s.streamId };
    if (s.model) b.model = s.model;
    if (state.conversationId) b.conversation_id = state.conversationId;
    return b;
  };
  const renewed = () => {
    if (state.conversationId) s.view.meta('Your session was renewed, so this message starts a new conversation.');
    state.conversationId = null;
  };
  return run(s, async () => {
    const res = await start(s, body, renewed);
    savePending(s);
    return res;
  });
}

async function stop() {
  const s = state.active;
  if (!s || s.stopRequested || !s.token) return;
  s.stopRequested = true;
  ui.stop.disabled = true;
  setStatus('Stopping…');
  try {
    await cancel(s);                           // the server ends the stream with `done` (cancelled)
  } catch (err) {
    s.stopRequested = false;
    if (state.active === s) ui.stop.disabled = false;
    setStatus(`Could not stop: ${api.describe(err)}`);
  }
}

/** After a reload: show what was received and continue after the last event id. */
async function resume(p) {
  if (p.principal === 'user' && api.principalKind() !== 'user') {
    state.waiting = p;
    setStatus('Waiting for sign-in to resume the reply…');
    return;
  }
  state.waiting = null;
  state.conversationId = p.conversationId || null;
  if (p.conversationId) {
    try {
      const messages = (await api.readConversation(p.conversationId)).messages || [];
      const at = messages.map((m) => m.role === 'user' && m.content === p.message).lastIndexOf(true);
      showMessages(at >= 0 ? messages.slice(0, at) : messages);
    } catch (_) { /* the earlier turns are not shown; the reply still resumes */ }
  }
  addTurn('user', 'You').body.textContent = p.message;
  const s = newReply({ ...p, view: replyView(p.text, p.model) });
  setStatus('Resuming the reply…');
  await run(s, async () => {
    s.token = await api.getToken();
    return attach(s);
  });
}

// ---- conversations, principals, the host page --------------------------------------------------

function newChat(status = 'New conversation.') {
  if (state.active) {
    state.active.abandoned = true;             // the server keeps generating; it is saved in that conversation
    if (state.active.controller) state.active.controller.abort();
    state.active = null;
    clearPending();
  }
  state.conversationId = null;
  clearTranscript('New conversation.');
  setBusy(false);
  if (!state.countdown) setStatus(status);
}

async function openConversation(id, title) {
  try {
    const conversation = await api.readConversation(id);
    newChat(`Opened “${title}”.`);
    state.conversationId = id;
    ui.transcript.replaceChildren();
    showMessages(conversation.messages || []);
    conversations.show(false);
    ui.message.focus();
  } catch (err) {
    setStatus(`Could not open the conversation: ${api.describe(err)}`);
  }
}

const conversations = historyPanel(
  { panel: $('history'), toggle: $('history-toggle'), list: $('history-list'), status: $('history-status') },
  {
    open: openConversation,
    deleted: (id) => { if (id === state.conversationId && !state.active) newChat(); },
    busy: () => Boolean(state.active),
  },
);

const host = connectToHost({
  auth: (token) => signIn(token),
  focus: () => ui.message.focus(),
});

/** A user JWT from the host page (null: back to the anonymous session). Memory only. */
async function signIn(token) {
  if (token === api.userToken()) return;      // the host sent the same token again
  state.epoch += 1;
  api.setUserToken(token);
  if (!state.active) newChat(token ? 'Signed in.' : 'Signed out.');
  ui.who.textContent = token ? 'Signed in' : 'Guest';
  if (!token) {
    host.post({ type: 'relay:auth-state', state: 'anonymous' });
    return;
  }
  try {
    await api.listConversations();             // proves the token before anything is sent with it
    host.post({ type: 'relay:auth-state', state: 'user' });
    if (conversations.shown()) conversations.refresh();
    if (state.waiting) resume(state.waiting);
  } catch (err) {
    api.forgetToken(token);
    state.epoch += 1;
    ui.who.textContent = 'Guest';
    setStatus(`Sign-in refused: ${api.describe(err)}`);
    host.post({ type: 'relay:auth-state', state: 'refused' });
  }
}

api.onNewAnonymousPrincipal(() => {
  state.epoch += 1;
  state.conversationId = null;
});

// ---- wiring --------------------------------------------------------------------------------

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (state.active || !state.ready || state.countdown) return;
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

ui.transcript.addEventListener('scroll', () => {
  const t = ui.transcript;
  state.follow = t.scrollHeight - t.scrollTop - t.clientHeight <= FOLLOW_SLACK_PX;
});

ui.transcript.addEventListener('click', (event) => {
  const copy = event.target.closest('button[data-copy]');
  if (!copy) return;
  const code = copy.closest('.code').querySelector('code').textContent;
  navigator.clipboard.writeText(code).then(
    () => setStatus('Code copied.'),
    () => setStatus('Copying was refused by the browser; select the code and copy it.'),
  );
});

ui.stop.addEventListener('click', stop);
ui.newChat.addEventListener('click', () => { newChat(); ui.message.focus(); });
ui.close.addEventListener('click', () => host.post({ type: 'relay:close' }));
document.addEventListener('keydown', (event) => {
  if (event.key !== 'Escape' || event.defaultPrevented) return;
  if (host.embedded) host.post({ type: 'relay:close' });
  else if (conversations.shown()) {
    conversations.show(false);
    $('history-toggle').focus();
  }
});

// ---- start -----------------------------------------------------------------------------------

function applyParams() {
  const title = (params.get('title') || '').trim().slice(0, 60);
  if (title) {
    ui.title.textContent = title;
    document.title = title;
  }
  if (host.embedded) {
    document.body.classList.add('embedded');
    ui.close.hidden = !host.host;
  }
}

async function loadModels() {
  try {
    const models = await api.loadModels();
    if (!models.length) throw new api.RelayError('no_models', 'No models are available');
    ui.model.replaceChildren(...models.map((m) => new Option(m.provider ? `${m.id} (${m.provider})` : m.id, m.id)));
    const wanted = params.get('model');
    const preferred = models.find((m) => m.id === wanted) || models.find((m) => m.default) || models[0];
    ui.model.value = preferred.id;
    return null;
  } catch (err) {
    ui.model.replaceChildren(new Option('Server default', ''));  // the field is optional
    return `models could not be loaded: ${api.describe(err)}`;
  }
}

async function init() {
  applyParams();
  if (!host.embedded && 'serviceWorker' in navigator && window.isSecureContext) {
    navigator.serviceWorker.register('/static/magic/sw.js', { scope: '/static/magic/' }).catch(() => {});
  }
  setBusy(false);
  if (host.host && !store.persistent()) {
    store.useHost((copy) => host.post({ type: 'relay:store', data: copy }), await host.restored());
  }
  const pending = loadPending();
  const [session, modelsProblem] = await Promise.all([
    api.getToken().then(() => null, (err) => `no session yet (${api.describe(err)}); sending will try again`),
    loadModels(),
  ]);
  const problems = [modelsProblem, session].filter(Boolean);
  state.ready = true;
  setBusy(false);
  setStatus(problems.length ? `Ready, but ${problems.join('; ')}.` : 'Ready.');
  if (pending) resume(pending);
}

init();
