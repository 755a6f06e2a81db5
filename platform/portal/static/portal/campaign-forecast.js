/* The review step's forecast card: the page renders at once and the forecast, which trains a model, is fetched
   here as an HTML fragment of released figures. Until it arrives the card says it is working; if it fails, it
   says so plainly. */
(function () {
  "use strict";
  var box = document.querySelector("[data-forecast-url]");
  if (!box) return;
  function failed() {
    var p = document.createElement("p");
    p.className = "notice warn small";
    p.setAttribute("data-testid", "forecast-error");
    p.textContent = "The forecast could not be worked out just now. Reload the page to try again.";
    box.replaceChildren(p);
  }
  fetch(box.getAttribute("data-forecast-url"), { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then(function (r) {
      if (!r.ok) throw new Error("forecast " + r.status);
      return r.text();
    })
    .then(function (html) { box.innerHTML = html; })
    .catch(failed);
})();
