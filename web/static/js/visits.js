// My visits: claim and release (online), and visit logs that work offline. A log is kept in
// IndexedDB ("guanai" / "outbox") with the id and occurred_at chosen here, then sent when the
// network is there; the API's idempotent resend (same id, same body: 200) means a log sent twice
// is stored once. What the server refuses stays on the screen until the volunteer resolves it.
"use strict";
(function () {
  const G = window.Guanai;
  const msg = G.msg;
  const DB = "guanai";
  const STORE = "outbox";
  let flushing = false;
  let latestPosition = 0;

  function request(r) {
    return new Promise((resolve, reject) => { r.onsuccess = () => resolve(r.result); r.onerror = () => reject(r.error); });
  }
  let dbPromise = null;
  function db() {
    if (!dbPromise) {
      const opening = indexedDB.open(DB, 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore(STORE, { keyPath: "id" });
      dbPromise = request(opening);
    }
    return dbPromise;
  }
  async function store(mode) { return (await db()).transaction(STORE, mode).objectStore(STORE); }
  const outbox = {
    all: async () => (await request((await store("readonly")).getAll())).sort((a, b) => a.queued_at.localeCompare(b.queued_at)),
    put: async (item) => request((await store("readwrite")).put(item)),
    remove: async (id) => request((await store("readwrite")).delete(id)),
  };

  function uuid4() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }

  const when = G.when;
  function slug(type) { return (type || "").replace("/problems/", ""); }
  function problemText(problem) {
    const key = "js.problem." + (problem.type || "other");
    const text = msg(key);
    return text === key ? msg("js.problem.other", { detail: problem.detail || problem.status || "" }) : text;
  }
  function flash(text) {
    const box = document.getElementById("flash");
    box.textContent = text;
    box.hidden = false;
  }
  function say(card, text) {
    const line = card.querySelector(".task-message");
    line.textContent = text;
    line.hidden = false;
  }

  function refresh(position) {
    latestPosition = Math.max(latestPosition, position || 0);
    if (!navigator.onLine || !window.htmx) return render();
    const url = "/app/visits" + (latestPosition ? `?min_position=${latestPosition}` : "");
    return window.htmx.ajax("GET", url, { target: "#task-list", swap: "outerHTML" })
      .then(() => G.keepPage())
      .then(render, render);
  }

  // ---- claim and release: the server decides, so these need the network ----

  async function change(card, action) {
    if (!navigator.onLine) { say(card, msg("js.offline.claim")); return; }
    let answer;
    try {
      answer = await G.api("POST", `/visits/${card.dataset.task}/${action}`, {});
    } catch (e) {
      say(card, msg("js.error.network"));
      return;
    }
    if (answer.status === 200) {
      flash(msg(action === "claim" ? "js.claim.done" : "js.release.done"));
      refresh(answer.body && answer.body.position);
      return;
    }
    const body = answer.body || {};
    const type = slug(body.type);
    if (type === "already-claimed") {
      const until = when(body.claimed_until);
      say(card, body.holder_helper_id
        ? msg("js.claim.taken", { holder: body.holder_helper_id.slice(0, 8), until })
        : msg("js.claim.taken_by_group", { until }));
    } else if (type === "claim-limit") {
      say(card, msg("js.claim.limit"));
    } else {
      say(card, problemText({ type, detail: body.detail, status: answer.status }));
    }
  }

  // ---- the visit log form ----

  const dialog = () => document.getElementById("log-dialog");
  const form = () => document.getElementById("log-form");

  // The visit's time is typed year first in China time ("2026-12-03 09:30"), as every page writes
  // it, whatever language the phone's own date picker would use; an unreadable one is null.
  function chinaTime(text) {
    const m = /^\s*(\d{4})-(\d{1,2})-(\d{1,2})[ T](\d{1,2}):(\d{2})\s*$/.exec(text || "");
    if (!m) return null;
    const two = (n) => String(n).padStart(2, "0");
    const at = new Date(`${m[1]}-${two(m[2])}-${two(m[3])}T${two(m[4])}:${m[5]}:00+08:00`);
    return Number.isNaN(at.getTime()) ? null : at;
  }

  function openLog(source, unplanned) {
    const f = form();
    f.reset();
    f.task_id.value = unplanned ? "" : source.dataset.task;
    f.pairing_id.value = source.dataset.pairing;
    f.person_id.value = source.dataset.person;
    f.occurred_at.value = when(new Date().toISOString());
    document.getElementById("log-for").textContent = msg("js.log.for", { name: source.dataset.name });
    document.getElementById("log-error").hidden = true;
    dialog().showModal();
    f.occurred_at.focus();
  }

  function logBody(f) {
    const data = new FormData(f);
    const findings = {};
    for (const name of ["living_conditions", "health", "mood"]) if (data.get(name)) findings[name] = data.get(name);
    if (data.getAll("safety_risks").length) findings.safety_risks = data.getAll("safety_risks");
    if (data.getAll("needs").length) findings.needs = data.getAll("needs");
    if (data.get("systolic") && data.get("diastolic")) {
      findings.blood_pressure = { systolic: Number(data.get("systolic")), diastolic: Number(data.get("diastolic")) };
    }
    if (data.get("blood_sugar_mmol")) findings.blood_sugar_mmol = Number(data.get("blood_sugar_mmol"));
    if (data.get("notes").trim()) findings.notes = data.get("notes").trim();
    const body = {
      id: uuid4(),
      occurred_at: chinaTime(data.get("occurred_at")).toISOString(),
      mode: data.get("mode"),
      findings,
      services: data.getAll("services"),
      service_items: data.getAll("service_items"),
      follow_up_needed: Boolean(data.get("follow_up_needed")),
      follow_up_notes: data.get("follow_up_notes").trim(),
    };
    if (data.get("raise_emergency")) {
      body.raise_emergency = true;
      body.emergency = { kind: data.get("emergency_kind"), description: data.get("emergency_description").trim() };
    }
    return body;
  }

  async function saveLog(event) {
    event.preventDefault();
    const f = form();
    if (!chinaTime(f.occurred_at.value)) {
      const error = document.getElementById("log-error");
      error.textContent = msg("js.log.bad_time");
      error.hidden = false;
      return;
    }
    const body = logBody(f);
    const task = f.task_id.value;
    const item = {
      id: body.id,
      path: task ? `/visits/${task}/complete` : "/visit-logs",
      body: task ? body : { ...body, pairing_id: f.pairing_id.value, person_id: f.person_id.value },
      task_id: task || null,
      name: document.getElementById("log-for").textContent,
      state: "waiting",
      queued_at: new Date().toISOString(),
    };
    await outbox.put(item);
    dialog().close();
    flash(msg(navigator.onLine ? "js.log.sent" : "js.log.queued"));
    await render();
    flush();
  }

  // ---- sending what waits ----

  async function flush() {
    if (flushing || !navigator.onLine) return render();
    flushing = true;
    let sent = 0;
    let position = 0;
    try {
      for (const item of await outbox.all()) {
        if (item.state !== "waiting") continue;
        let answer;
        try {
          answer = await G.api("POST", item.path, item.body);
        } catch (e) {
          break; // the network went away: try again when it is back
        }
        if (answer.status === 200 || answer.status === 201) {
          await outbox.remove(item.id);
          sent += 1;
          position = Math.max(position, (answer.body && answer.body.position) || 0);
          if (item.body.raise_emergency) flash(msg("js.log.help_filed"));
          continue;
        }
        if (answer.status === 401) { item.problem = { type: "unauthenticated" }; await outbox.put(item); break; }
        if (answer.status >= 500 || answer.status === 429 || answer.status === 408) break; // not the log's fault
        const body = answer.body || {};
        item.state = "refused";
        item.problem = { type: slug(body.type), detail: body.detail || "", status: answer.status };
        await outbox.put(item);
        sent += 1;
      }
    } finally {
      flushing = false;
    }
    if (sent) await refresh(position);
    else await render();
  }

  async function resolve(id, how) {
    const item = (await outbox.all()).find((i) => i.id === id);
    if (!item) return;
    if (how === "discard") {
      if (!window.confirm(msg("js.outbox.confirm_discard"))) return;
      await outbox.remove(id);
    } else if (how === "unplanned") {
      // The task was someone else's or is closed: the visit still happened, so it is kept as an
      // unplanned visit of the same pairing, under a new id (the old one is refused for good).
      const card = item.task_id && document.querySelector(`[data-task="${item.task_id}"]`);
      const pairing = item.body.pairing_id || (card && card.dataset.pairing) || item.pairing_id;
      const person = item.body.person_id || (card && card.dataset.person) || item.person_id;
      await outbox.remove(id);
      const body = { ...item.body, id: uuid4(), pairing_id: pairing, person_id: person };
      await outbox.put({ ...item, id: body.id, body, path: "/visit-logs", task_id: null, state: "waiting", problem: null });
    } else {
      await outbox.put({ ...item, state: "waiting", problem: null });
    }
    flush();
  }

  async function render() {
    const items = await outbox.all();
    const section = document.getElementById("outbox");
    const list = document.getElementById("outbox-list");
    if (!section || !list) return;
    section.hidden = items.length === 0;
    const waiting = items.filter((i) => i.state === "waiting").length;
    document.getElementById("outbox-count").textContent = msg("js.outbox.count", { n: waiting });
    list.replaceChildren(...items.map((item) => {
      const li = document.createElement("li");
      li.className = "item queue" + (item.state === "refused" ? " refused" : "");
      li.dataset.outbox = item.id;
      li.dataset.state = item.state;
      const head = document.createElement("header");
      const title = document.createElement("h3");
      title.textContent = item.name;
      const badge = document.createElement("span");
      badge.className = "badge " + (item.state === "refused" ? "bad" : "warn");
      badge.textContent = msg(item.state === "refused" ? "js.outbox.refused" : "js.outbox.waiting");
      head.append(title, badge);
      const meta = document.createElement("p");
      meta.className = "meta";
      meta.textContent = msg("js.outbox.visited", { time: when(item.body.occurred_at) });
      li.append(head, meta);
      if (item.problem) {
        const why = document.createElement("p");
        why.className = "form-error problem";
        why.textContent = problemText(item.problem);
        li.append(why);
      }
      if (item.state === "refused") {
        const actions = document.createElement("div");
        actions.className = "actions";
        const options = [["retry", "js.outbox.retry"], ["discard", "js.outbox.discard"]];
        if (item.task_id && ["claimed-by-other", "closed"].includes(item.problem && item.problem.type)) {
          options.unshift(["unplanned", "js.outbox.as_unplanned"]);
        }
        for (const [how, key] of options) {
          const button = document.createElement("button");
          button.type = "button";
          button.dataset.resolve = how;
          button.textContent = msg(key);
          actions.append(button);
        }
        li.append(actions);
      }
      return li;
    }));
    const queuedTasks = new Set(items.filter((i) => i.task_id).map((i) => i.task_id));
    for (const card of document.querySelectorAll(".task[data-task]")) {
      const queued = queuedTasks.has(card.dataset.task);
      const note = card.querySelector(".task-queued");
      if (note) note.hidden = !queued;
      const actions = card.querySelector(".actions");
      if (actions) actions.hidden = queued;
    }
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    const card = button.closest("[data-task], .person-row");
    const action = button.dataset.action;
    if (action === "claim" || action === "release") change(card, action);
    else if (action === "log") openLog(card, false);
    else if (action === "log-unplanned") openLog(card, true);
    else if (action === "close-dialog") dialog().close();
    else if (button.dataset.resolve) resolve(button.closest("[data-outbox]").dataset.outbox, button.dataset.resolve);
  });

  document.addEventListener("DOMContentLoaded", () => {
    form().addEventListener("submit", saveLog);
    // A service item belongs to its category: ticking the item ticks the category too.
    form().addEventListener("change", (event) => {
      const box = event.target;
      if (box.name === "service_items" && box.checked) {
        const category = form().querySelector(`input[name="services"][value="${box.dataset.category}"]`);
        if (category) category.checked = true;
      }
    });
    flush();
  });
  window.addEventListener("online", () => flush());
  window.addEventListener("offline", () => render());
})();
