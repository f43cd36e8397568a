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
  // A table that a narrow screen shows as one card per row (ops.css, "table.stack") labels each
  // cell with its column's heading.
  function labelCells(root) {
    for (const table of (root || document).querySelectorAll("table.stack")) {
      const headings = [...table.querySelectorAll("thead th")].map((th) => th.textContent.trim());
      for (const row of table.querySelectorAll("tbody tr")) {
        [...row.children].forEach((cell, i) => { if (headings[i]) cell.dataset.label = headings[i]; });
      }
    }
  }
  document.addEventListener("DOMContentLoaded", () => labelCells(document));
  document.addEventListener("htmx:afterSettle", (event) => labelCells(event.detail.elt.parentElement || document));
  // The activation slip's print button (no inline handlers: the page's CSP admits none).
  document.addEventListener("click", (event) => {
    if (event.target.closest("[data-print]")) window.print();
  });
})();
