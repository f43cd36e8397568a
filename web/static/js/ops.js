// Supervisor, auditor and administrator pages: forms go through htmx (hx-boost) so that each
// change carries the session's CSRF value in X-CSRF-Token (double submit), and a refused form
// (422, with its fields and reasons) is shown in place like a saved one.
"use strict";
(function () {
  document.addEventListener("htmx:configRequest", (event) => {
    const verb = (event.detail.verb || "get").toUpperCase();
    if (verb !== "GET" && window.Guanai) event.detail.headers["X-CSRF-Token"] = window.Guanai.cookie("guanai_csrf");
  });
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // The activation slip's print button (no inline handlers: the page's CSP admits none).
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-print]")) window.print();
  });
})();
