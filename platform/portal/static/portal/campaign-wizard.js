/* The campaign wizard: consent-filtered reach as segments are ticked, a live preview of the message with a
   sample consumer's real recommendations, and the schedule fields that apply to the chosen kind.
   Without JavaScript the form still works; the review page shows the reach and the preview. */
(function () {
  "use strict";
  var form = document.querySelector("form[data-campaign-wizard]");
  if (!form) return;
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;

  function post(url, payload) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(payload),
    }).then(function (r) { return r.json(); });
  }

  function checked(name) {
    return Array.prototype.map.call(form.querySelectorAll("input[name=" + name + "]:checked"), function (el) { return el.value; });
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  /* ---- reach: the segment language's estimate of (included) AND NOT (excluded) */
  var reachBox = form.querySelector("[data-reach]");
  var reachSize = form.querySelector("[data-reach-size]");
  var reachConsented = form.querySelector("[data-reach-consented]");
  var reachStatus = form.querySelector("[data-reach-status]");
  var reachSeq = 0;
  function updateReach() {
    var include = checked("include_segments");
    var exclude = checked("exclude_segments");
    if (!include.length) {
      reachSize.textContent = "—";
      reachConsented.textContent = "—";
      reachStatus.textContent = "Choose segments to see how many consumers the campaign can reach.";
      return;
    }
    var expression = "(" + include.map(function (id) { return "segment:" + id; }).join(" OR ") + ")";
    exclude.forEach(function (id) { expression += " AND NOT segment:" + id; });
    var mine = ++reachSeq;
    reachBox.setAttribute("aria-busy", "true");
    post(form.getAttribute("data-estimate-url"), { expression: expression }).then(function (body) {
      if (mine !== reachSeq) return;
      reachBox.setAttribute("aria-busy", "false");
      if (body.error) {
        reachSize.textContent = "—";
        reachConsented.textContent = "—";
        reachStatus.textContent = body.error.message;
        return;
      }
      reachSize.textContent = body.size.display;
      reachConsented.textContent = body.reachable.display;
      reachStatus.textContent = "Only consumers who opted in receive it. Suppressions and frequency caps are applied at launch.";
    }).catch(function () { reachStatus.textContent = "The reach could not be fetched just now."; });
  }

  /* ---- preview */
  var title = form.querySelector("[data-preview-title]");
  var body = form.querySelector("[data-preview-body]");
  var list = form.querySelector("[data-preview-products]");
  var note = form.querySelector("[data-preview-note]");
  var sampleSelect = form.querySelector("[data-preview-sample]");
  var previewSeq = 0;
  function value(name) { var el = form.elements[name]; return el ? el.value : ""; }
  function updatePreview() {
    var mine = ++previewSeq;
    post(form.getAttribute("data-preview-url"), {
      title_template: value("title_template"),
      body_template: value("body_template"),
      personalised_products: value("personalised_products"),
      coupon_code: value("coupon_code"),
      discount_percent: value("discount_percent"),
      include_segment_ids: checked("include_segments"),
      sample: sampleSelect ? sampleSelect.value : "1",
    }).then(function (data) {
      if (mine !== previewSeq) return;
      list.innerHTML = "";
      if (data.problems) {
        title.textContent = "—";
        body.textContent = "";
        var all = [];
        Object.keys(data.problems).forEach(function (k) { all = all.concat(data.problems[k]); });
        note.textContent = all.join(" ");
        note.className = "small field-error";
        return;
      }
      if (data.error) { note.textContent = data.error.message; return; }
      title.textContent = data.title;
      body.textContent = data.body;
      (data.products || []).forEach(function (p) {
        var li = document.createElement("li");
        li.textContent = p.title + (p.price ? " · " + p.price : "");
        list.appendChild(li);
      });
      note.textContent = data.note;
      note.className = "small muted";
      if (sampleSelect) sampleSelect.disabled = !data.samples;
    }).catch(function () { note.textContent = "The preview could not be fetched just now."; });
  }

  /* ---- schedule fields */
  function updateSchedule() {
    var kind = (form.querySelector("input[name=schedule_kind]:checked") || {}).value || "now";
    form.querySelectorAll("[data-show-when]").forEach(function (el) {
      el.hidden = el.getAttribute("data-show-when") !== kind;
    });
    /* the repeat picker: daily / weekly / monthly at a local time, or a custom crontab */
    var every = value("repeat_every") || "custom";
    form.querySelectorAll("[data-show-repeat]").forEach(function (el) {
      el.hidden = el.getAttribute("data-show-repeat").split(" ").indexOf(every) === -1;
    });
  }

  var reachSoon = debounce(updateReach, 250);
  var previewSoon = debounce(updatePreview, 350);
  form.addEventListener("change", function (e) {
    if (e.target.name === "include_segments" || e.target.name === "exclude_segments") { reachSoon(); previewSoon(); }
    if (e.target.name === "schedule_kind" || e.target.name === "repeat_every") updateSchedule();
    if (e.target === sampleSelect) previewSoon();
    if (["personalised_products", "coupon_code", "discount_percent"].indexOf(e.target.name) !== -1) previewSoon();
  });
  form.addEventListener("input", function (e) {
    if (["title_template", "body_template", "coupon_code", "discount_percent", "personalised_products"].indexOf(e.target.name) !== -1) previewSoon();
  });
  updateSchedule();
  updateReach();
  updatePreview();
})();
