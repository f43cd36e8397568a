// Guanai web client: what every page shares. No framework; the page works without it where it can.
"use strict";
(function () {
  const messages = JSON.parse(document.getElementById("messages")?.textContent || "{}");

  function msg(key, values) {
    let text = messages[key] || key;
    for (const [name, value] of Object.entries(values || {})) text = text.replaceAll("{" + name + "}", String(value));
    return text;
  }

  function cookie(name) {
    const found = document.cookie.split(";").map((c) => c.trim()).find((c) => c.startsWith(name + "="));
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  // A call to the JSON API with the session cookie; a change carries the CSRF cookie's value
  // (double submit). Answers {status, body}; a network failure throws (the caller decides to queue).
  async function api(method, path, body, headers) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...(headers || {}) } };
    if (method !== "GET" && method !== "HEAD") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = cookie("guanai_csrf");
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    const response = await fetch(path, init);
    let parsed = null;
    const type = response.headers.get("content-type") || "";
    if (type.includes("json")) parsed = await response.json();
    return { status: response.status, body: parsed };
  }

  function showOffline() {
    const banner = document.getElementById("offline-banner");
    if (banner) banner.hidden = navigator.onLine;
  }
  window.addEventListener("online", showOffline);
  window.addEventListener("offline", showOffline);
  document.addEventListener("DOMContentLoaded", showOffline);

  // Keep this page as it is now for use offline (the service worker answers with it when the
  // network is gone). Called once the worker runs, and again after a change updated the page.
  function keepPage() {
    if (!window.caches || !navigator.onLine || document.body.dataset.page.startsWith("error")) return Promise.resolve();
    return caches.open("guanai-pages-v1").then((cache) => cache.add(location.pathname)).catch(() => {});
  }

  let ready = Promise.resolve();
  if ("serviceWorker" in navigator && document.body.dataset.page !== "sign-in") {
    ready = navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" })
      .then(() => navigator.serviceWorker.ready)
      .then(keepPage)
      .then(() => { document.body.dataset.offlineReady = "1"; })
      .catch(() => {});
  }

  // Signing out forgets what this browser kept offline for the account, then ends the session.
  document.addEventListener("click", async (event) => {
    const link = event.target.closest("#sign-out");
    if (!link) return;
    event.preventDefault();
    try { await api("POST", "/auth/sign-out", {}); } catch (e) { /* offline: the cookie expires anyway */ }
    if (window.caches) for (const key of await caches.keys()) await caches.delete(key);
    if (window.indexedDB && indexedDB.deleteDatabase) indexedDB.deleteDatabase("guanai");
    window.location.assign(link.href);
  });

  window.Guanai = { msg, api, cookie, keepPage, ready: () => ready };
})();
