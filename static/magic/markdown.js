/*
 * Safe Markdown for model output, built with DOM APIs only: createElement and Text
 * nodes, never innerHTML, so raw HTML in a reply stays text and nothing in it runs.
 *
 * Blocks: paragraphs (a single newline is a line break), fenced code blocks (``` or
 * ~~~, with a Copy button; an unclosed fence runs to the end, as while streaming),
 * lists (- * + or 1. 1)), and # headings shown as bold paragraphs.
 * Inline: `code`, **strong**, __strong__, *em*, _em_, backslash escapes, and
 * [text](url) links whose URL is http or https (anything else keeps only its text).
 */

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const ITEM = /^ {0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/;
const HEADING = /^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$/;
const BLANK = /^\s*$/;
const PUNCTUATION = /[!-/:-@[-`{-~]/;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

/** An http(s) URL as a string, or null for anything else (javascript:, data:, relative…). */
export function safeHref(raw) {
  const text = raw.trim();
  if (!/^https?:\/\//i.test(text)) return null;
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch (_) {
    return null;
  }
}

function link(label, href) {
  const a = element('a');
  a.href = href;
  a.rel = 'noopener noreferrer';
  a.target = '_blank';
  a.append(...inline(label, false));
  return a;
}

/** Where `marker` closes an emphasis opened just before `from`, or -1: a run of exactly that length. */
function closing(text, marker, from) {
  const c = marker[0];
  for (let at = text.indexOf(marker, from); at >= 0; at = text.indexOf(marker, at + 1)) {
    let end = at;
    while (text[end] === c) end += 1;
    if (end - at !== marker.length || at === from || /\s/.test(text[at - 1]) || text[at - 1] === '\\') {
      at = end - 1;
      continue;
    }
    if (c === '_' && /[A-Za-z0-9]/.test(text[end] || '')) continue;
    return at;
  }
  return -1;
}

/** Inline Markdown of one block's text as a list of nodes. */
function inline(text, links = true) {
  const nodes = [];
  let plain = '';
  const flush = () => {
    if (plain) nodes.push(document.createTextNode(plain));
    plain = '';
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\' && PUNCTUATION.test(text[i + 1] || '')) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '`') {
      const run = /^`+/.exec(text.slice(i))[0];
      const end = text.indexOf(run, i + run.length);
      if (end > 0) {
        flush();
        nodes.push(element('code', null, text.slice(i + run.length, end).replace(/^ (.+) $/, '$1')));
        i = end + run.length;
        continue;
      }
      plain += run;
      i += run.length;
      continue;
    }
    if (c === '[' && links) {
      const m = /^\[([^\]\n]*)\]\(\s*([^()\s]*)(?:\s+"[^"]*")?\s*\)/.exec(text.slice(i));
      if (m) {
        flush();
        const href = safeHref(m[2]);
        nodes.push(...(href ? [link(m[1], href)] : inline(m[1], false)));  // an unsafe link keeps its text only
        i += m[0].length;
        continue;
      }
    }
    if (c === '*' || c === '_') {
      const run = (c === '*' ? /^\*+/ : /^_+/).exec(text.slice(i))[0];
      const opensWord = c === '*' || !/[A-Za-z0-9]/.test(text[i - 1] || '');
      const next = text[i + run.length] || '';
      const end = run.length <= 2 && opensWord && next && !/\s/.test(next) ? closing(text, run, i + run.length) : -1;
      if (end > 0) {
        flush();
        const wrapper = element(run.length === 2 ? 'strong' : 'em');
        wrapper.append(...inline(text.slice(i + run.length, end), links));
        nodes.push(wrapper);
        i = end + run.length;
      } else {
        plain += run;                          // a delimiter run that closes nothing is text
        i += run.length;
      }
      continue;
    }
    plain += c;
    i += 1;
  }
  flush();
  return nodes;
}

/** A paragraph: inline Markdown, each newline a <br>. */
function paragraph(lines, className) {
  const p = element('p', className);
  lines.forEach((line, index) => {
    if (index) p.append(element('br'));
    p.append(...inline(line.trim()));
  });
  return p;
}

function codeBlock(language, code) {
  const figure = element('div', 'code');
  const bar = element('div', 'code-bar');
  bar.append(element('span', 'code-lang', language || 'code'));
  const copy = element('button', 'copy', 'Copy');
  copy.type = 'button';
  copy.setAttribute('aria-label', `Copy ${language || 'code'} block`);
  copy.dataset.copy = '';  // the widget copies the <code> text next to this button
  bar.append(copy);
  const pre = element('pre');
  pre.tabIndex = 0;  // scrollable code is reachable from the keyboard
  pre.append(element('code', language ? `language-${language}` : null, code));
  figure.append(bar, pre);
  return figure;
}

function list(items, ordered, start) {
  const node = element(ordered ? 'ol' : 'ul');
  if (ordered && start !== 1) node.start = start;
  for (const lines of items) {
    const li = element('li');
    lines.forEach((line, index) => {
      if (index) li.append(element('br'));
      li.append(...inline(line.trim()));
    });
    node.append(li);
  }
  return node;
}

/** `line` is a list item of the given kind (ordered or not). */
function sameKind(line, ordered) {
  const m = ITEM.exec(line || '');
  return Boolean(m) && /\d/.test(m[1]) === ordered;
}

function isBlockStart(line) {
  return FENCE.test(line) || ITEM.test(line) || HEADING.test(line);
}

/** Markdown `text` as a DocumentFragment. */
export function renderMarkdown(text) {
  const fragment = document.createDocumentFragment();
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    const fence = FENCE.exec(line);
    if (fence) {
      const body = [];
      const close = new RegExp(`^ {0,3}${fence[1][0] === '`' ? '`' : '~'}{${fence[1].length},}\\s*$`);
      for (i += 1; i < lines.length && !close.test(lines[i]); i += 1) body.push(lines[i]);
      i += 1;
      fragment.append(codeBlock(fence[2], body.join('\n')));
      continue;
    }
    if (BLANK.test(line)) {
      i += 1;
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      fragment.append(paragraph([heading[1]], 'heading'));
      i += 1;
      continue;
    }
    const item = ITEM.exec(line);
    if (item) {
      const ordered = /\d/.test(item[1]);
      const items = [];
      for (;;) {
        const m = ITEM.exec(lines[i] || '');
        if (m && sameKind(lines[i], ordered)) {
          items.push([m[2]]);
          i += 1;
        } else if (i < lines.length && !BLANK.test(lines[i]) && !isBlockStart(lines[i]) && /^\s/.test(lines[i])) {
          items[items.length - 1].push(lines[i]);  // an indented continuation line
          i += 1;
        } else if (i < lines.length && BLANK.test(lines[i]) && sameKind(lines[i + 1], ordered)) {
          i += 1;  // a blank line between items of one list
        } else {
          break;
        }
      }
      fragment.append(list(items, ordered, ordered ? parseInt(item[1], 10) : 1));
      continue;
    }
    const body = [];
    while (i < lines.length && !BLANK.test(lines[i]) && !(body.length && isBlockStart(lines[i]))) {
      body.push(lines[i]);
      i += 1;
    }
    fragment.append(paragraph(body));
  }
  return fragment;
}
