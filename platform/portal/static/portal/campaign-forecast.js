/* The review step's forecast card: the page renders at once and the forecast, which trains a model, is fetched
   here as an HTML fragment of released figures. Until it arrives the card says it is working; if it fails, it
   says so plainly. */
(function () {
  "use strict";
  var box = document.querySelector("[data-forecast-url]");
  if (!box) return;
  function failed(message) {
    var p = document.createElement("p");
    p.className = "notice warn small";
    p.setAttribute("data-testid", "forecast-error");
    p.textContent = typeof message === "string" && message
      ? message
      : "The forecast could not be worked out just now. Reload the page to try again.";
    box.replaceChildren(p);
  }
  fetch(box.getAttribute("data-forecast-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then(function (r) {
      // A refusal of the request itself (signed out, the campaign gone) is the portal's JSON error: its message.
      if ((r.headers.get("Content-Type") || "").indexOf("application/json") === 0) {
        return r.json().then(function (body) { failed((body.error || {}).message); });
      }
      if (!r.ok) throw new Error("forecast " + r.status);
      return r.text().then(function (html) { box.innerHTML = html; });
    })
    .catch(failed);
})();
