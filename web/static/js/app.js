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
  async function api(method, path, body, headers, retried) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...(headers || {}) } };
    if (method !== "GET" && method !== "HEAD") {
      init.headers["Content-Type"] = "application/json";
      init.headers["X-CSRF-Token"] = cookie("guanai_csrf");
      init.body = JSON.stringify(body === undefined ? {} : body);
    }
    const response = await fetch(path, init);
    // A browser session's access cookie lives minutes; its refresh cookie lives days. On a 401,
    // renew once (the refresh cookie and the CSRF header) and try again.
    if (response.status === 401 && !retried && path !== "/auth/refresh" && path !== "/auth/sign-in" && cookie("guanai_csrf")) {
      const renewed = await fetch("/auth/refresh", {
        method: "POST", credentials: "same-origin",
        headers: { Accept: "application/json", "Content-Type": "application/json", "X-CSRF-Token": cookie("guanai_csrf") },
        body: "{}",
      }).catch(() => null);
      if (renewed && renewed.ok) return api(method, path, body, headers, true);
    }
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
  // Read again as shown, query and all (a name search names only the people it found: the page
  // without its query would read, and write to the access log, everyone on the first page), and
  // kept under its address without the query, as the service worker keeps pages.
  function keepPage() {
    if (!window.caches || !navigator.onLine || document.body.dataset.page.startsWith("error")) return Promise.resolve();
    return caches.open("guanai-pages-v1")
      .then((cache) => fetch(location.pathname + location.search, { credentials: "same-origin" })
        .then((response) => (response.ok && !response.redirected ? cache.put(location.origin + location.pathname, response) : undefined)))
      .catch(() => {});
  }

  let ready = Promise.resolve();
  if ("serviceWorker" in navigator && document.body.dataset.page !== "sign-in") {
    ready = navigator.serviceWorker.register("/app/sw.js", { scope: "/app/" })
      .then(() => navigator.serviceWorker.ready)
      .then(keepPage)
      .then(() => { document.body.dataset.offlineReady = "1"; })
      .catch(() => {});
  }

  // A menu wider than the screen scrolls: bring the current page's item into view, and mark the
  // edges beyond which more items lie (the stylesheet fades them and shows an arrow).
  function menuEdges(nav, strip) {
    const more = [];
    if (strip.scrollLeft > 2) more.push("left");
    if (strip.scrollLeft + strip.clientWidth < strip.scrollWidth - 2) more.push("right");
    nav.dataset.more = more.join(" ");
  }
  document.addEventListener("DOMContentLoaded", () => {
    const nav = document.querySelector("header.top nav");
    const strip = nav && nav.querySelector("ul");
    if (!strip) return;
    const current = strip.querySelector("[aria-current='page']");
    if (current && strip.scrollWidth > strip.clientWidth) {
      strip.scrollLeft = Math.max(0, current.parentElement.offsetLeft - (strip.clientWidth - current.offsetWidth) / 2);
    }
    menuEdges(nav, strip);
    strip.addEventListener("scroll", () => menuEdges(nav, strip), { passive: true });
    window.addEventListener("resize", () => menuEdges(nav, strip));
  });

  function outboxCount() {
    if (!window.indexedDB) return Promise.resolve(0);
    return new Promise((resolve) => {
      const opening = indexedDB.open("guanai", 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore("outbox", { keyPath: "id" });
      opening.onerror = () => resolve(0);
      opening.onsuccess = () => {
        const db = opening.result;
        const counting = db.transaction("outbox", "readonly").objectStore("outbox").count();
        counting.onsuccess = () => { db.close(); resolve(counting.result); };
        counting.onerror = () => { db.close(); resolve(0); };
      };
    });
  }

  // Signing out forgets what this browser kept offline for the account, then ends the session.
  document.addEventListener("click", async (event) => {
    const link = event.target.closest("#sign-out");
    if (!link) return;
    event.preventDefault();
    // Visit logs still waiting on this phone would be lost: say so, and let the person stay.
    const waiting = await outboxCount();
    if (waiting > 0 && !window.confirm(msg("js.signout.waiting", { n: waiting }))) return;
    try { await api("POST", "/auth/sign-out", {}); } catch (e) { /* offline: the cookie expires anyway */ }
    if (window.caches) for (const key of await caches.keys()) await caches.delete(key);
    if (window.indexedDB && indexedDB.deleteDatabase) indexedDB.deleteDatabase("guanai");
    window.location.assign(link.href);
  });

  // A moment as the server's pages write it: China time, year first ("2026-12-03 14:05"), in
  // either language, whatever the browser's own locale would make of it.
  const chinaParts = new Intl.DateTimeFormat("en-GB", {
    timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  });
  function when(iso) {
    if (!iso) return "";
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return "";
    const p = Object.fromEntries(chinaParts.formatToParts(at).map((part) => [part.type, part.value]));
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}`;
  }

  window.Guanai = { msg, api, cookie, keepPage, when, ready: () => ready };
})();
