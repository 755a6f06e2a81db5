/* While a campaign is being sent, poll its progress and update the page; reload when it has finished. */
(function () {
  "use strict";
  var box = document.querySelector("[data-progress-url]");
  if (!box) return;
  var url = box.getAttribute("data-progress-url");
  var written = box.querySelector("[data-written]");
  var dispatched = box.querySelector("[data-dispatched]");
  var phase = box.querySelector("[data-phase]");
  var status = box.querySelector("[data-status]");
  var audience = box.querySelector("[data-audience]");
  var heading = box.querySelector("[data-testid=campaign-state]");
  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (p) {
        // Refused (signed out, the campaign gone): say why and stop polling; numbers cannot come any more.
        if (p.error) { status.textContent = p.error.message; return; }
        written.value = p.percent_written;
        written.textContent = p.percent_written + "%";
        dispatched.value = p.percent_dispatched;
        dispatched.textContent = p.percent_dispatched + "%";
        phase.textContent = p.phase || (p.status === "scheduled" ? "Waiting to start" : "—");
        if (heading && p.heading) heading.textContent = p.heading;
        status.textContent = p.status_label;
        audience.textContent = p.audience;
        if (p.finished) { window.location.reload(); return; }
        setTimeout(poll, 1500);
      })
      .catch(function () { setTimeout(poll, 4000); });
  }
  setTimeout(poll, 1000);
})();
