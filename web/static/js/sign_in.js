// The sign-in form: posts the account and password as JSON to the accounts API, which sets the
// session cookies; then goes where the person was going.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sign-in-form");
  const error = document.getElementById("sign-in-error");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    const body = { username: form.username.value.trim(), password: form.password.value };
    let answer;
    try {
      answer = await window.Guanai.api("POST", "/auth/sign-in", body);
    } catch (e) {
      answer = { status: 0 };
    }
    if (answer.status >= 200 && answer.status < 300) {
      window.location.assign(form.dataset.next || "/app/");
      return;
    }
    const key = answer.status === 401 || answer.status === 422 || answer.status === 400 ? "js.signin.failed" : "js.signin.unavailable";
    error.textContent = window.Guanai.msg(key);
    error.hidden = false;
    form.password.focus();
  });
});
