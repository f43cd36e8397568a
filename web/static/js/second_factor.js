// Enrolling an authenticator app (a second factor), which supervisors, auditors, administrators
// and county responders need before their session reaches anything but /auth: start it
// (POST /auth/totp: secret and QR code), confirm it with a code (POST /auth/totp/confirm: ten
// recovery codes, shown once), renew the session (POST /auth/refresh) to full access, go on.
"use strict";
document.addEventListener("DOMContentLoaded", async () => {
  const G = window.Guanai;
  const box = document.getElementById("totp");
  const error = document.getElementById("totp-error");
  function show(text) { error.textContent = text; error.hidden = false; }
  let started;
  try {
    started = await G.api("POST", "/auth/totp", {});
  } catch (e) {
    started = { status: 0 };
  }
  if (started.status === 401) { window.location.assign("/app/sign-in?next=" + encodeURIComponent(location.pathname)); return; }
  if (started.status !== 200) { show(G.msg("js.totp.unavailable")); return; }
  const qr = document.getElementById("totp-qr");
  qr.src = started.body.qr_svg;
  qr.hidden = false;
  document.getElementById("totp-secret").textContent = started.body.secret;
  document.getElementById("totp-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const code = event.target.totp_code.value.trim();
    let answer;
    try {
      answer = await G.api("POST", "/auth/totp/confirm", { totp_code: code });
    } catch (e) {
      answer = { status: 0 };
    }
    if (answer.status !== 200) { show(G.msg(answer.status === 0 ? "js.error.network" : "js.totp.refused")); return; }
    await G.api("POST", "/auth/refresh", {}).catch(() => null);
    const list = document.getElementById("totp-codes");
    list.replaceChildren(...answer.body.recovery_codes.map((c) => { const li = document.createElement("li"); li.textContent = c; return li; }));
    event.target.hidden = true;
    document.getElementById("totp-done").hidden = false;
    document.getElementById("totp-continue").href = box.dataset.next || "/app/";
  });
});
