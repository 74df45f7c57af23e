/*
 * Relay widget service worker: caches the widget's own static files so the page
 * opens offline, and nothing else. API requests (and anything not listed below)
 * are not intercepted at all: they go straight to the network and are never cached.
 * Strategy for the listed files: network first (a deploy shows at once), cache as fallback.
 */
'use strict';

const CACHE = 'relay-magic-v2';
const ASSETS = [
  'index.html', 'magic.js', 'api.js', 'stream.js', 'markdown.js', 'history.js', 'frame.js', 'store.js', 'magic.css', 'icon.svg',
];
const ASSET_URLS = new Set(ASSETS.map((path) => new URL(path, self.registration.scope).href));

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE)
      .then((cache) => cache.addAll([...ASSET_URLS]))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(
        keys.filter((key) => key.startsWith('relay-magic-') && key !== CACHE).map((key) => caches.delete(key)),
      ))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.search || !ASSET_URLS.has(url.href)) return;

  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok && response.type === 'basic' && !response.redirected) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.href, copy)));
        }
        return response;
      })
      .catch(() => caches.match(url.href).then((cached) => cached || Response.error())),
  );
});
