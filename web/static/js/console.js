// The responder console: live alerts from GET /emergencies/stream (Server-Sent Events), each
// followed by a fresh read of the list (the queue is the truth; an alert carries only ids);
// reports not seen before are flagged new, with a sound and a notification where permitted.
// Going offline closes the stream; coming back reads the list again and says so. Deadlines
// count down every second.
"use strict";
(function () {
  const G = window.Guanai;
  const msg = G.msg;
  const known = new Set();
  const fresh = new Set();
  let source = null;
  let wasOffline = false;
  let audio = null;
  let position = 0;

  function flash(text) { const box = document.getElementById("flash"); box.textContent = text; box.hidden = false; }
  function connection(text) { const box = document.getElementById("connection"); box.textContent = text || ""; box.hidden = !text; }
  function slug(type) { return (type || "").replace("/problems/", ""); }
  function problemText(body, status) {
    const type = slug(body && body.type);
    const text = msg("js.problem." + type);
    return text === "js.problem." + type ? msg("js.problem.other", { detail: (body && body.detail) || status }) : text;
  }

  function duration(ms) {
    const s = Math.floor(Math.abs(ms) / 1000);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const two = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${two(m)}:${two(sec)}` : `${two(m)}:${two(sec)}`;
  }
  function tick() {
    const now = Date.now();
    for (const el of document.querySelectorAll("[data-deadline]")) {
      if (!el.dataset.deadline) continue;
      const left = new Date(el.dataset.deadline).getTime() - now;
      el.textContent = left >= 0 ? msg("js.console.left", { time: duration(left) }) : msg("js.console.overdue", { time: duration(left) });
      el.classList.toggle("overdue", left < 0);
    }
  }

  // Which reports are new: those that were not on the screen before this read of the list.
  function mark(firstRead) {
    const list = document.getElementById("report-list");
    position = Math.max(position, Number(list && list.dataset.position) || 0);
    const arrived = [];
    for (const card of document.querySelectorAll("[data-report]")) {
      const id = card.dataset.report;
      if (!known.has(id)) { known.add(id); if (!firstRead) { fresh.add(id); arrived.push(card); } }
      const isNew = fresh.has(id);
      // A data attribute, not a class: htmx settles the classes of swapped content after us.
      card.toggleAttribute("data-new", isNew);
      card.querySelector(".new-badge").hidden = !isNew;
    }
    tick();
    return arrived;
  }

  function beep() {
    if (!audio) return;
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 880;
    gain.gain.value = 0.2;
    osc.connect(gain).connect(audio.destination);
    osc.start();
    osc.stop(audio.currentTime + 0.4);
  }
  function notify(cards) {
    if (!cards.length) return;
    beep();
    if (window.Notification && Notification.permission === "granted") {
      for (const card of cards) {
        new Notification(msg("js.console.notification", { category: card.dataset.category, severity: card.dataset.severity }),
          { tag: card.dataset.report });
      }
    }
  }

  async function refresh(min, expect) {
    const url = "/app/console" + (min ? `?min_position=${min}` : "");
    for (let attempt = 0; attempt < 8; attempt++) {
      try {
        await window.htmx.ajax("GET", url, { target: "#report-list", swap: "outerHTML" });
      } catch (e) {
        return;
      }
      const arrived = mark(false);
      notify(arrived);
      // An alert is sent right after its report is routed; the view may trail it by a moment.
      const card = expect && document.getElementById("report-" + expect);
      if (!expect || (card && card.dataset.status !== "reported")) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/emergencies/stream");
    source.addEventListener("open", () => {
      document.getElementById("live").hidden = false;
      if (wasOffline) {
        wasOffline = false;
        refresh().then(() => connection(msg("js.console.caught_up")));
      }
    });
    source.addEventListener("alert", (event) => {
      let alert = {};
      try { alert = JSON.parse(event.data); } catch (e) { /* the list is read anyway */ }
      refresh(0, alert.report_id);
    });
    source.addEventListener("error", () => {
      document.getElementById("live").hidden = true;
      wasOffline = true;
      connection(msg("js.console.offline"));
      // The browser retries a dropped stream by itself, but not one refused (an expired access
      // cookie): renew the session through a plain call, then open the stream again.
      if (source.readyState === EventSource.CLOSED && navigator.onLine) {
        setTimeout(() => G.api("GET", "/emergencies?limit=1").catch(() => null).then(connect), 2000);
      }
    });
  }

  // ---- acting on a report ----

  async function act(card, action, body) {
    let answer;
    try {
      answer = await G.api("POST", `/emergencies/${card.dataset.report}/${action}`, body || {});
    } catch (e) {
      return { ok: false, text: msg("js.error.network") };
    }
    if (answer.status === 200) {
      fresh.delete(card.dataset.report);
      await refresh(answer.body && answer.body.position);
      return { ok: true };
    }
    if (slug(answer.body && answer.body.type) === "version-conflict") await refresh();
    return { ok: false, text: problemText(answer.body, answer.status) };
  }

  function say(card, text) { const line = card.querySelector(".report-message"); line.textContent = text; line.hidden = false; }

  function openNotes(card, action) {
    const form = document.getElementById("notes-form");
    form.reset();
    form.report_id.value = card.dataset.report;
    form.action.value = action;
    const title = document.getElementById("notes-title");
    title.textContent = title.dataset[action];
    document.getElementById("outcome-field").hidden = action !== "resolve";
    document.getElementById("notes-error").hidden = true;
    document.getElementById("notes-dialog").showModal();
    form.notes.focus();
  }

  async function submitNotes(event) {
    event.preventDefault();
    const form = document.getElementById("notes-form");
    const card = document.getElementById("report-" + form.report_id.value);
    const action = form.action.value;
    const notes = form.notes.value.trim();
    const body = action === "resolve" ? { outcome: form.outcome.value, notes } : { notes };
    const done = await act(card, action, body);
    if (done.ok) {
      document.getElementById("notes-dialog").close();
      flash(msg(action === "resolve" ? "js.console.resolved" : "js.console.escalated"));
    } else {
      const error = document.getElementById("notes-error");
      error.textContent = done.text;
      error.hidden = false;
    }
  }

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.id === "enable-alerts") {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      if (window.Notification && Notification.permission === "default") await Notification.requestPermission();
      button.hidden = true;
      flash(msg("js.console.alerts_on"));
      return;
    }
    if (button.dataset.action === "close-dialog") { document.getElementById("notes-dialog").close(); return; }
    const card = button.closest("[data-report]");
    if (!card) return;
    if (button.dataset.action === "acknowledge") {
      const done = await act(card, "acknowledge");
      if (done.ok) flash(msg("js.console.acknowledged"));
      else say(document.getElementById("report-" + card.dataset.report) || card, done.text);
    } else if (button.dataset.action === "escalate" || button.dataset.action === "resolve") {
      openNotes(card, button.dataset.action);
    }
  });

  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("notes-form").addEventListener("submit", submitNotes);
    mark(true);
    setInterval(tick, 1000);
    connect();
  });
  window.addEventListener("offline", () => {
    if (source) source.close();
    document.getElementById("live").hidden = true;
    wasOffline = true;
    connection(msg("js.console.offline"));
  });
  window.addEventListener("online", () => connect());
})();
