/*
 * The conversations panel: the principal's conversations, newest first (as the API
 * lists them); Open shows one and continues it; Delete asks first, in place.
 */
import { deleteConversation, describe, listConversations } from './api.js';

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function button(text, className, onClick) {
  const b = el('button', className, text);
  b.type = 'button';
  b.addEventListener('click', onClick);
  return b;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}

/**
 * ui: {panel, toggle, list, status}; actions: {open(id, title), deleted(id), busy()}.
 * Returns {refresh(), show(open), shown()}.
 */
export function historyPanel(ui, actions) {
  let loading = null;

  function confirmDelete(item, conversation, title) {
    const question = el('p', 'confirm-text', `Delete “${title}”? This cannot be undone.`);
    const cancel = button('Cancel', null, () => refresh().then(() => focusRow(conversation.id, 'delete')));
    const remove = button('Delete', 'danger', async () => {
      remove.disabled = true;
      try {
        await deleteConversation(conversation.id);
        actions.deleted(conversation.id);
        await refresh();
        ui.status.textContent = `Deleted “${title}”.`;
        (ui.list.querySelector('button') || ui.toggle).focus();
      } catch (err) {
        remove.disabled = false;
        ui.status.textContent = `Could not delete: ${describe(err)}`;
      }
    });
    const group = el('div', 'confirm');
    group.setAttribute('role', 'group');
    group.setAttribute('aria-label', `Confirm deleting “${title}”`);
    group.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape') return;
      event.stopPropagation();  // Escape cancels the question, it does not close the chat
      cancel.click();
    });
    group.append(question, remove, cancel);
    item.replaceChildren(group);
    cancel.focus();
  }

  function row(conversation) {
    const title = conversation.title || 'Untitled';
    const item = el('li', 'history-item');
    item.dataset.id = conversation.id;
    const open = button('', 'open', () => {
      if (!actions.busy()) actions.open(conversation.id, title);
    });
    open.append(el('span', 'history-title', title));
    open.append(el('span', 'history-meta', `${when(conversation.updated_at)} · ${conversation.message_count} messages`));
    open.setAttribute('aria-label', `Open “${title}”`);
    const remove = button('Delete', 'delete', () => confirmDelete(item, conversation, title));
    remove.setAttribute('aria-label', `Delete “${title}”`);
    item.append(open, remove);
    return item;
  }

  function focusRow(id, which) {
    const item = ui.list.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    const target = item && item.querySelector(`button.${which}`);
    (target || ui.toggle).focus();
  }

  async function load() {
    ui.panel.setAttribute('aria-busy', 'true');
    ui.status.textContent = 'Loading…';
    try {
      const conversations = await listConversations();
      ui.list.replaceChildren(...conversations.map(row));
      ui.status.textContent = conversations.length ? 'Newest first.' : 'No conversations yet.';
    } catch (err) {
      ui.status.textContent = `Could not load the conversations: ${describe(err)}`;
    } finally {
      ui.panel.setAttribute('aria-busy', 'false');
    }
  }

  function refresh() {
    if (!loading) loading = load().finally(() => { loading = null; });
    return loading;
  }

  function show(open) {
    ui.panel.hidden = !open;
    ui.toggle.setAttribute('aria-expanded', String(open));
    if (open) refresh();
  }

  ui.toggle.addEventListener('click', () => show(ui.panel.hidden));
  return { refresh, show, shown: () => !ui.panel.hidden };
}
