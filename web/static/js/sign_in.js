// The sign-in form: phone number and password (and an authenticator code when the account has a
// second factor) sent as JSON to the accounts API, asking for a cookie session; the API sets the
// session cookies; then the page goes where the person was going.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-in-form");
  const error = document.getElementById("sign-in-error");
  const totpField = document.getElementById("totp-field");
  const msg = window.Guanai.msg;
  function show(key) { error.textContent = msg(key); error.hidden = false; }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = { phone: form.phone.value.trim(), password: form.password.value, session: "cookie", device_name: "web" };
    if (!totpField.hidden && form.totp_code.value.trim()) body.totp_code = form.totp_code.value.trim();
    let answer;
    try {
      answer = await window.Guanai.api("POST", "/auth/sign-in", body);
    } catch (e) {
      answer = { status: 0, body: null };
    }
    if (answer.status >= 200 && answer.status < 300) {
      const next = form.dataset.next || "/app/";
      // A role that needs a second factor and has none yet: enrol it first (the session reaches
      // only /auth until then).
      if (answer.body && answer.body.second_factor_enrolment_required) {
        window.location.assign("/app/second-factor?next=" + encodeURIComponent(next));
        return;
      }
      window.location.assign(next);
      return;
    }
    const type = ((answer.body && answer.body.type) || "").replace("/problems/", "");
    if (type === "second-factor-required") { totpField.hidden = false; show("js.signin.totp"); form.totp_code.focus(); return; }
    if (type === "second-factor-refused") { show("js.signin.totp_refused"); form.totp_code.focus(); return; }
    if (answer.status === 429) { show("js.signin.throttled"); return; }
    if (answer.status === 423 || type === "account-locked") { show("js.signin.locked"); return; }
    show(answer.status === 401 || answer.status === 422 || answer.status === 400 ? "js.signin.failed" : "js.signin.unavailable");
    form.password.focus();
  });
});
