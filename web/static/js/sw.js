// The service worker: the app shell and the pages a person opened are kept, so a later load works
// with no network. Pages: network first (fresh when online), the kept copy when offline. Static
// files: the kept copy first, refreshed in the background. Nothing but GET is touched: changes
// made offline wait in IndexedDB (visits.js), never here.
"use strict";
const SHELL = "guanai-shell-v1";
const PAGES = "guanai-pages-v1";
const SHELL_FILES = [
  "/app/static/css/app.css",
  "/app/static/js/app.js",
  "/app/static/js/visits.js",
  "/app/static/vendor/htmx.org-2.0.11/htmx.min.js",
  "/app/static/icon.svg",
  "/app/manifest.webmanifest",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(SHELL).then((cache) => cache.addAll(SHELL_FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== PAGES).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
});

function pageKey(url) {
  // One kept copy per page, whatever the query (a language switch or a refresh marker).
  const u = new URL(url);
  return u.origin + u.pathname;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !url.pathname.startsWith("/app")) return;
  if (url.pathname === "/app/sign-in" || url.pathname === "/app/sw.js") return;
  // htmx asks for fragments of a page: never keep one in the page's place.
  if (request.headers.get("HX-Request")) return;
  if (url.pathname.startsWith("/app/static/")) {
    event.respondWith(
      caches.open(SHELL).then(async (cache) => {
        const kept = await cache.match(request, { ignoreSearch: true });
        const fresh = fetch(request).then((response) => {
          if (response.ok) cache.put(request, response.clone());
          return response;
        }).catch(() => kept);
        return kept || fresh;
      })
    );
    return;
  }
  event.respondWith(
    fetch(request).then((response) => {
      // Keep only real pages: a redirect to sign-in or an error page is not worth keeping.
      if (response.ok && !response.redirected && (response.headers.get("content-type") || "").includes("text/html")) {
        const copy = response.clone();
        caches.open(PAGES).then((cache) => cache.put(pageKey(request.url), copy));
      }
      return response;
    }).catch(async () => {
      const kept = await caches.match(pageKey(request.url));
      return kept || Response.error();
    })
  );
});
