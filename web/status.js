// Fetches the live part of the status page again every few seconds and swaps it in: no reload, no
// framework. A 401 (the session ended) reloads, which shows the sign-in form.
"use strict";
(function () {
  const live = document.getElementById("live");
  const every = Number(live.dataset.refresh) || 2000;
  async function refresh() {
    try {
      const response = await fetch("/status/live", { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) { location.reload(); return; }
      if (response.ok) {
        live.innerHTML = await response.text();
        document.body.classList.remove("stale");
      } else {
        document.body.classList.add("stale");
      }
    } catch (error) {
      document.body.classList.add("stale");
    }
    setTimeout(refresh, every);
  }
  setTimeout(refresh, every);
})();
