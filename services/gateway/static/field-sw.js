// The field page's service worker: it keeps the page's shell (HTML, scripts, styles, icons) so
// that the page opens with no connection at all. Network first — a connected phone always gets
// the current release — and the cache only when the network fails. Everything else (the API,
// photos, /ws/live) is left to the network untouched: the page's outbox handles being offline.
// Served at /field-sw.js (services/gateway/pages.py) so that its scope may be /field.
const CACHE = "cityhub-field-v1";
const SHELL = [
  "/field",
  "/static/app/field.js",
  "/static/app/field_queue.js",
  "/static/app/field_tasks.js",
  "/static/app/field_model.js",
  "/static/app/field_phrases.js",
  "/static/app/field_photos.js",
  "/static/app/field_report.js",
  "/static/app/api.js",
  "/static/app/live.js",
  "/static/app/i18n.js",
  "/static/app/signin.js",
  "/static/app/common.css",
  "/static/app/field.css",
  "/static/manifest.webmanifest",
  "/static/icons/field.svg",
  "/static/icons/field-192.png",
  "/static/icons/field-512.png",
];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((key) => key !== CACHE).map((key) => caches.delete(key))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  if (!SHELL.includes(url.pathname)) return; // not ours: the browser fetches it as usual
  event.respondWith(
    fetch(event.request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          event.waitUntil(caches.open(CACHE).then((cache) => cache.put(url.pathname, copy)));
        }
        return response;
      })
      .catch(() => caches.match(url.pathname).then((cached) => cached ?? Response.error())),
  );
});
