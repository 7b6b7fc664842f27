/* Sign-in links carry a one-time code in the URL fragment (/login#code=...), which browsers
   never send to the server (so it is never in a log): post it to exchange it for a session. */
"use strict";

(function () {
  const match = /(?:^#|&)code=([^&]+)/.exec(window.location.hash);
  if (!match) return;
  const code = decodeURIComponent(match[1]);
  history.replaceState(null, "", window.location.pathname + window.location.search);
  const next = new URLSearchParams(window.location.search).get("next") || "/";
  const box = document.getElementById("code-error");
  const body = new URLSearchParams({ code: code, next: next });
  fetch("/login/code", { method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (response) {
      return response.json().then(function (data) { return { ok: response.ok, data: data }; });
    })
    .then(function (result) {
      if (result.ok) {
        window.location.replace(result.data.next || "/");
        return;
      }
      box.textContent = result.data.detail || "This sign-in link cannot be used.";
      box.hidden = false;
    })
    .catch(function () {
      box.textContent = "Could not reach the server. Check your connection and try again.";
      box.hidden = false;
    });
})();
