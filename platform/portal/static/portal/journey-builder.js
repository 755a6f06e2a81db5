/* The journey builder: the journey's settings and a vertical flow of step cards, saved as one JSON document through
   the same service as the API (journeys.services; a live journey gets a new version).

   Every condition (the trigger event, the exit condition, a wait's event, a branch's condition) is a text field of
   the segment language with the segment editor's rule builder under it (rule-builder.js: one builder, the same
   parse endpoint, text and rules kept in step both ways); the single-event fields use its action-only mode.

   Steps are kept as the objects the server sent: the builder changes only the keys it has controls for, so a key it
   does not know (a send step's variants, say) is saved back as it was. Targets (next, on_event, on_timeout, then,
   else) are later step indices or "exit": adding, removing and moving steps re-points them, and a move that would
   make a jump go backwards is refused with the reason. The server's refusal names the field (steps[2].timeout); it
   is shown next to that field.

   Markup contract (templates/portal/journeys/builder.html): [data-journey-builder] (filled here), [data-jb-error]
   (the refusal), script#journey-builder-data (portal.views.journeys._builder_context), a csrf token input. */
(function () {
  "use strict";

  var host = document.querySelector("[data-journey-builder]");
  var dataScript = document.getElementById("journey-builder-data");
  if (!host || !dataScript || !window.RuleBuilder) return;
  var config = JSON.parse(dataScript.textContent);
  var readonly = !!config.readonly;
  var csrf = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";
  var errorBox = document.querySelector("[data-jb-error]");
  var fetchValues = window.RuleBuilder.valueFetcher(config.urls.values);

  var TYPES = [
    ["wait", "Wait"],
    ["wait_for", "Wait for an event"],
    ["branch", "Branch on a condition"],
    ["send", "Send a message"],
    ["exit", "Exit"],
  ];
  var TYPE_LABELS = {};
  TYPES.forEach(function (t) { TYPE_LABELS[t[0]] = t[1]; });
  var NEW_STEP = {
    wait: function () { return { type: "wait", duration: "1d" }; },
    wait_for: function () { return { type: "wait_for", event: "purchased()", timeout: "1d" }; },
    branch: function () { return { type: "branch", condition: "" }; },
    send: function () { return { type: "send", title: "", body: "", products: 3 }; },
    exit: function () { return { type: "exit" }; },
  };
  // Each step type's targets, with how the card names them.
  var TARGETS = {
    wait: [["next", "Afterwards, go to"]],
    wait_for: [["on_event", "If the event happens, go to"], ["on_timeout", "If it does not, after the timeout, go to"]],
    branch: [["then", "If the condition holds, go to"], ["else", "If it does not, go to"]],
    send: [["next", "Afterwards, go to"]],
    exit: [],
  };
  var TARGET_KEYS = ["next", "on_event", "on_timeout", "then", "else"];
  var DURATION = /^\s*(\d{1,5})\s*(m|h|d)\s*$/;

  /* ---------------------------------------------------------------- the document being edited */
  var j = config.journey;
  var state = {
    name: j.name || "",
    trigger_kind: j.trigger_kind || "event",
    trigger_segment_id: j.trigger_segment_id === null || j.trigger_segment_id === undefined ? "" : String(j.trigger_segment_id),
    trigger_event: j.trigger_event || "",
    exit_condition: j.exit_condition || "",
    holdout_percent: j.holdout_share === undefined || j.holdout_share === null ? "10" : shareToPercent(j.holdout_share),
    reentry: j.reentry || "never",
    reentry_days: j.reentry_days === null || j.reentry_days === undefined ? "" : String(j.reentry_days),
    quiet_own: !!j.quiet_start,
    quiet_start: hhmm(j.quiet_start) || "21:00",
    quiet_end: hhmm(j.quiet_end) || "08:00",
    frequency_cap: j.frequency_cap === null || j.frequency_cap === undefined ? "" : String(j.frequency_cap),
    frequency_window_days: String(j.frequency_window_days || 7),
    attribution_window_days: String(j.attribution_window_days || 7),
  };
  var steps = JSON.parse(JSON.stringify(j.steps || []));

  function shareToPercent(share) {
    var percent = Math.round(Number(share) * 1000) / 10;
    return isNaN(percent) ? String(share) : String(percent);
  }

  // A stored time as the time input shows it: HH:MM, or HH:MM:SS when it has seconds (the API keeps them, and a
  // window ending on a second must not move by saving the journey again).
  function hhmm(value) {
    if (!value) return "";
    var text = String(value);
    return text.length >= 8 && text.slice(5, 8) !== ":00" ? text.slice(0, 8) : text.slice(0, 5);
  }

  function wholeOrText(value) {
    var text = String(value).trim();
    return /^[0-9]{1,9}$/.test(text) ? parseInt(text, 10) : text;
  }

  function payload() {
    syncConditions();
    var percent = String(state.holdout_percent).trim();
    var share = /^[0-9]+(\.[0-9]+)?$/.test(percent) ? (Number(percent) / 100).toFixed(3) : percent;
    return {
      name: state.name,
      trigger_kind: state.trigger_kind,
      trigger_segment_id: state.trigger_kind === "segment_entered" && state.trigger_segment_id ? wholeOrText(state.trigger_segment_id) : null,
      trigger_event: state.trigger_kind === "event" ? state.trigger_event : "",
      exit_condition: state.exit_condition,
      holdout_share: share,
      reentry: state.reentry,
      reentry_days: state.reentry === "after_days" ? wholeOrText(state.reentry_days) : null,
      quiet_start: state.quiet_own ? state.quiet_start : null,
      quiet_end: state.quiet_own ? state.quiet_end : null,
      frequency_cap: String(state.frequency_cap).trim() ? wholeOrText(state.frequency_cap) : null,
      frequency_window_days: wholeOrText(state.frequency_window_days),
      attribution_window_days: wholeOrText(state.attribution_window_days),
      steps: steps,
      // The journey as the builder opened it: the server refuses the save (409) if it was saved since.
      updated_at: j.updated_at || null,
    };
  }

  /* ---------------------------------------------------------------- drawing helpers */
  var uid = 0;
  function nextId(prefix) { return (prefix || "jb") + "-" + (++uid); }

  // Drawn with the rule builder's helpers (loaded first on the page): one el, one select.
  var el = window.RuleBuilder.el;
  var select = window.RuleBuilder.select;

  function errorSlot(key) {
    return el("p", { class: "field-error", "data-error-for": key, id: nextId("jb-err"), hidden: true });
  }

  // A labelled control with its error slot (the server's refusal for `key`) and an optional help line.
  function field(label, control, key, help, className, locked) {
    if (!control.id) control.id = nextId();
    if (readonly || locked) control.disabled = true;
    var slot = key ? errorSlot(key) : null;
    var helpLine = help ? el("div", { class: "help", id: nextId("jb-help"), text: help }) : null;
    var described = [slot && slot.id, helpLine && helpLine.id].filter(Boolean).join(" ");
    if (described) control.setAttribute("aria-describedby", described);
    if (key) control.setAttribute("data-field", key);
    return el("div", { class: "field " + (className || "") }, [el("label", { for: control.id, text: label }), control, slot, helpLine]);
  }

  function textInput(value, onInput, attrs) {
    var input = el("input", Object.assign({ type: "text", value: value === undefined || value === null ? "" : String(value), autocomplete: "off" }, attrs || {}));
    input.addEventListener("input", function () { onInput(input.value); changed(); });
    return input;
  }

  /* ---------------------------------------------------------------- conditions: the segment rule builder */
  var families = {};
  // The settings and the steps are redrawn separately; each keeps its own condition fields (a sync writes a field's
  // text into the document; a builder is refreshed when the tag catalogue arrives).
  var groups = { settings: { syncs: [], builders: [] }, steps: { syncs: [], builders: [] } };
  var currentGroup = groups.settings;

  function syncConditions() {
    groups.settings.syncs.concat(groups.steps.syncs).forEach(function (sync) { sync(); });
  }

  function startGroup(name) {
    groups[name].syncs.forEach(function (sync) { sync(); });
    groups[name] = { syncs: [], builders: [] };
    currentGroup = groups[name];
  }

  function loadCatalogue() {
    if (readonly) return;
    fetch(config.urls.tags, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { tags: [] }; })
      .then(function (data) {
        families = {};
        (data.tags || []).forEach(function (t) { (families[t.family] = families[t.family] || []).push(t); });
        groups.settings.builders.concat(groups.steps.builders).forEach(function (b) { b.refreshOptions(families); });
      })
      .catch(function () { /* the tag list is a help: conditions can be typed without it */ });
  }

  function conditionField(options) {
    var textarea = el("textarea", { class: "expr jb-expr", rows: 2, spellcheck: "false", autocomplete: "off", autocapitalize: "off", value: options.value || "" });
    var wrapper = field(options.label, textarea, options.key, options.help, "jb-condition", options.locked);
    var syntax = el("pre", { class: "expr-error", role: "alert", hidden: true });
    wrapper.insertBefore(syntax, textarea.nextSibling);
    var assign = function () { options.assign(textarea.value); };
    currentGroup.syncs.push(assign);
    if (readonly || options.locked) return wrapper;
    var undo = el("button", { type: "button", class: "secondary small", "data-undo": true, title: "Undo (Ctrl+Z)", text: "Undo", disabled: true });
    var redo = el("button", { type: "button", class: "secondary small", "data-redo": true, title: "Redo (Ctrl+Shift+Z)", text: "Redo", disabled: true });
    var root = el("section", { class: "rule-builder jb-rules", "aria-label": options.label + ": as rules", hidden: true }, [
      el("div", { class: "rb-head" }, [
        el("span", { class: "small muted", text: options.actionOnly ? "The same event, as a rule:" : "The same condition, as rules:" }),
        el("div", { class: "rb-history" }, [undo, redo]),
      ]),
      el("p", { class: "rb-problem", "data-builder-problem": true, role: "alert", hidden: true }),
      el("div", { "data-builder-tree": true }),
      el("p", { class: "visually-hidden", "data-builder-status": true, role: "status", "aria-live": "polite" }),
      el("div", { "data-builder-lists": true, hidden: true }),
    ]);
    wrapper.appendChild(root);
    var builder = window.RuleBuilder.mount({
      root: root,
      editor: textarea,
      vocabulary: options.actionOnly ? config.event_vocabulary : config.vocabulary,
      parseUrl: config.urls.parse,
      csrf: csrf,
      families: families,
      fetchValues: fetchValues,
      showError: function (error, text) {
        syntax.hidden = !error;
        syntax.textContent = error ? window.RuleBuilder.errorText(error, text) : "";
        if (error) textarea.setAttribute("aria-invalid", "true"); else textarea.removeAttribute("aria-invalid");
      },
      onChange: function () { assign(); changed(); },
      actionOnly: !!options.actionOnly,
      idPrefix: nextId("jb-rb"),
      keyScope: wrapper,
    });
    currentGroup.builders.push(builder);
    textarea.addEventListener("input", function () { assign(); builder.textChanged(); changed(); });
    return wrapper;
  }

  /* ---------------------------------------------------------------- durations, times, targets */
  function durationField(label, value, key, onValue, help) {
    var match = DURATION.exec(value || "");
    var amount = el("input", { type: "number", min: "1", step: "1", inputmode: "numeric", class: "jb-amount", value: match ? match[1] : (value || "").replace(/[mhd]\s*$/, "") });
    var unit = select({ "aria-label": label + ": unit" }, [["m", "minutes"], ["h", "hours"], ["d", "days"]], match ? match[2] : "h");
    if (readonly) unit.disabled = true;
    var update = function () { onValue(amount.value.trim() + unit.value); changed(); };
    amount.addEventListener("input", update);
    unit.addEventListener("change", update);
    var wrapper = field(label, amount, key, help || "From 1 minute up to 90 days.", "jb-duration-field");
    var row = el("div", { class: "jb-duration" });
    wrapper.insertBefore(row, amount);
    row.appendChild(amount);
    row.appendChild(unit);
    return wrapper;
  }

  function summary(step) {
    var text;
    if (step.type === "wait") text = step.until ? "wait until " + step.until : "wait " + (step.duration || "");
    else if (step.type === "wait_for") text = "wait up to " + (step.timeout || "") + " for " + (step.event || "an event");
    else if (step.type === "branch") text = "if " + (step.condition || "…");
    else if (step.type === "send") text = "send “" + (step.title || "…") + "”";
    else if (step.type === "exit") text = "exit";
    else text = String(step.type);
    return text.length > 60 ? text.slice(0, 59) + "…" : text;
  }

  function targetName(index, target) {
    if (target === "exit") return "exit the journey";
    if (target === undefined || target === null || target === "") {
      return index + 1 < steps.length ? "step " + (index + 2) + " (the next)" : "the end (the journey completes)";
    }
    return "step " + (Number(target) + 1);
  }

  function targetField(step, index, key, label) {
    var options = [["", index + 1 < steps.length ? "the next step (" + (index + 2) + ")" : "the end: the journey completes"]];
    for (var later = index + 1; later < steps.length; later++) options.push([String(later), "step " + (later + 1) + ": " + summary(steps[later])]);
    options.push(["exit", "exit the journey"]);
    var current = step[key] === undefined || step[key] === null ? "" : String(step[key]);
    if (!options.some(function (o) { return o[0] === current; })) options.push([current, "step " + (Number(current) + 1) + " (not after this one: choose another)"]);
    var control = select({ "data-key": "step-" + index + "-" + key }, options, current);
    control.addEventListener("change", function () {
      if (control.value === "") delete step[key];
      else step[key] = control.value === "exit" ? "exit" : Number(control.value);
      changed();
      renderSteps();
    });
    return field(label, control, "steps[" + index + "]." + key, null, "jb-target");
  }

  /* ---------------------------------------------------------------- the journey's settings */
  var settingsBox = el("fieldset", { class: "jb-settings" });
  var stepsBox = el("fieldset", { class: "jb-steps" });
  var saveBar = el("div", { class: "jb-save actions" });
  host.appendChild(settingsBox);
  host.appendChild(stepsBox);
  host.appendChild(saveBar);

  function renderSettings() {
    startGroup("settings");
    settingsBox.innerHTML = "";
    settingsBox.appendChild(el("legend", { text: "Journey" }));
    settingsBox.appendChild(field("Name", textInput(state.name, function (v) { state.name = v; }, { maxlength: "200" }), "name"));
    // The trigger of an active journey cannot change (the service refuses it): its fields are shown locked.
    var locked = config.journey.status === "active";
    var kind = select({}, [["event", "an event (a consumer does something)"], ["segment_entered", "a consumer enters one of my segments"]], state.trigger_kind);
    kind.addEventListener("change", function () { state.trigger_kind = kind.value; changed(); renderSettings(); });
    var startRow = el("div", { class: "form-row" }, [field("Starts when", kind, "trigger_kind", locked ? "Pause the journey to change what starts it." : null, null, locked)]);
    settingsBox.appendChild(startRow);
    if (state.trigger_kind === "segment_entered") {
      var choices = [["", "choose a segment"]].concat(config.segments.map(function (s) { return [String(s.id), s.name]; }));
      if (state.trigger_segment_id && !config.segments.some(function (s) { return String(s.id) === state.trigger_segment_id; })) {
        choices.push([state.trigger_segment_id, "segment #" + state.trigger_segment_id]);
      }
      var segment = select({}, choices, state.trigger_segment_id);
      segment.addEventListener("change", function () { state.trigger_segment_id = segment.value; changed(); });
      startRow.appendChild(field("Segment", segment, "trigger_segment_id", config.segments.length ? null : "You have no segments yet: create one first.", null, locked));
    } else {
      settingsBox.appendChild(conditionField({
        label: "The event that starts it", key: "trigger_event", value: state.trigger_event, actionOnly: true, locked: locked,
        help: 'One action of the segment language, e.g. carted(category="outdoor"): every such event of your store enrols the consumer.',
        assign: function (v) { state.trigger_event = v; },
      }));
    }
    settingsBox.appendChild(conditionField({
      label: "Ends at once when (optional)", key: "exit_condition", value: state.exit_condition, actionOnly: true,
      help: "One action, e.g. purchased(): when it happens the consumer leaves the journey at whatever step.",
      assign: function (v) { state.exit_condition = v; },
    }));
    var reentry = select({}, [["never", "never: one pass per consumer"], ["after_days", "again, some days after the last entry"]], state.reentry);
    reentry.addEventListener("change", function () { state.reentry = reentry.value; changed(); renderSettings(); });
    var row = el("div", { class: "form-row" }, [field("Re-entry", reentry, "reentry")]);
    if (state.reentry === "after_days") {
      row.appendChild(field("Days after the last entry", textInput(state.reentry_days, function (v) { state.reentry_days = v; }, { type: "number", min: "1", max: "3650", inputmode: "numeric" }), "reentry_days", "1 to 3650."));
    }
    row.appendChild(field("Holdout (%)", textInput(state.holdout_percent, function (v) { state.holdout_percent = v; }, { type: "number", min: "0", max: "50", step: "0.1", inputmode: "decimal" }), "holdout_share",
      "0 to 50 % of entrants get nothing: the control group the report measures against."));
    settingsBox.appendChild(row);

    var own = el("input", { type: "checkbox" });
    own.checked = state.quiet_own;
    if (readonly) own.disabled = true;
    own.id = nextId();
    own.addEventListener("change", function () { state.quiet_own = own.checked; changed(); renderSettings(); });
    settingsBox.appendChild(el("div", { class: "field" }, [el("label", { class: "checkbox", for: own.id }, [own, "Extra quiet hours for this journey (on top of the platform's and your store's)"])]));
    if (state.quiet_own) {
      settingsBox.appendChild(el("div", { class: "form-row" }, [
        field("Quiet from", textInput(state.quiet_start, function (v) { state.quiet_start = v; }, { type: "time", step: state.quiet_start.length > 5 ? 1 : null }), "quiet_start", "Sends due then wait until the quiet hours end."),
        field("Quiet until", textInput(state.quiet_end, function (v) { state.quiet_end = v; }, { type: "time", step: state.quiet_end.length > 5 ? 1 : null }), "quiet_end"),
      ]));
    }
    settingsBox.appendChild(el("div", { class: "form-row" }, [
      field("Frequency cap (optional)", textInput(state.frequency_cap, function (v) { state.frequency_cap = v; }, { type: "number", min: "1", inputmode: "numeric" }), "frequency_cap", "At most this many messages per consumer…"),
      field("…per days", textInput(state.frequency_window_days, function (v) { state.frequency_window_days = v; }, { type: "number", min: "1", max: "365", inputmode: "numeric" }), "frequency_window_days"),
      field("Attribution window (days)", textInput(state.attribution_window_days, function (v) { state.attribution_window_days = v; }, { type: "number", min: "1", max: "365", inputmode: "numeric" }), "attribution_window_days", "A purchase this long after entry counts as a conversion."),
    ]));
  }

  /* ---------------------------------------------------------------- the flow of steps */
  var lastFocusedMessageField = {};

  function stepFields(step, index, card) {
    var key = function (k) { return "steps[" + index + "]." + k; };
    if (step.type === "wait") {
      var mode = select({}, [["duration", "for a while"], ["until", "until a time of day"]], step.until !== undefined && step.duration === undefined ? "until" : "duration");
      mode.addEventListener("change", function () {
        if (mode.value === "until") { delete step.duration; step.until = step.until || "09:00"; }
        else { delete step.until; step.duration = step.duration || "1d"; }
        changed();
        renderSteps();
      });
      var row = el("div", { class: "form-row" }, [field("Wait", mode, null)]);
      if (step.until !== undefined && step.duration === undefined) {
        row.appendChild(field("Until (local time)", textInput(step.until, function (v) { step.until = v; }, { type: "time" }), key("until"), "The next such time in the platform's time zone."));
      } else {
        row.appendChild(durationField("How long", step.duration, key("duration"), function (v) { step.duration = v; }));
      }
      card.appendChild(row);
    } else if (step.type === "wait_for") {
      card.appendChild(conditionField({
        label: "The event", key: key("event"), value: step.event, actionOnly: true,
        help: "One action, e.g. purchased(); events of your store in the wait's window count.",
        assign: function (v) { step.event = v; },
      }));
      card.appendChild(el("div", { class: "form-row" }, [durationField("Wait at most", step.timeout, key("timeout"), function (v) { step.timeout = v; })]));
    } else if (step.type === "branch") {
      card.appendChild(conditionField({
        label: "Condition", key: key("condition"), value: step.condition,
        help: "Any expression of the segment language, checked for this one consumer when the step runs.",
        assign: function (v) { step.condition = v; },
      }));
    } else if (step.type === "send") {
      var title = textInput(step.title, function (v) { step.title = v; }, { maxlength: "400" });
      var body = el("textarea", { rows: 3, value: step.body || "" });
      body.addEventListener("input", function () { step.body = body.value; changed(); });
      [title, body].forEach(function (input) { input.addEventListener("focus", function () { lastFocusedMessageField[index] = input; }); });
      card.appendChild(field("Title", title, key("title")));
      card.appendChild(field("Message", body, key("body")));
      if (!readonly) {
        var chips = el("div", { class: "jb-placeholders", role: "group", "aria-label": "Insert a placeholder into step " + (index + 1) + "'s title or message" }, [el("span", { class: "small muted", text: "Insert:" })]);
        config.placeholders.forEach(function (p) {
          var chip = el("button", { type: "button", class: "secondary small", title: p.help, text: "{" + p.name + "}" });
          chip.addEventListener("mousedown", function (e) { e.preventDefault(); });
          chip.addEventListener("click", function () { insertPlaceholder(step, index, "{" + p.name + "}", title, body); });
          chips.appendChild(chip);
        });
        card.appendChild(chips);
      }
      var optional = function (k) {
        return function (v) { if (String(v).trim() === "") delete step[k]; else step[k] = k === "products" ? wholeOrText(v) : v; };
      };
      card.appendChild(el("div", { class: "form-row" }, [
        field("Coupon code", textInput(step.coupon_code, optional("coupon_code"), { maxlength: "64" }), key("coupon_code"), "Optional; {coupon_code} and {offer} show it."),
        field("Discount (%)", textInput(step.discount_percent, optional("discount_percent"), { type: "number", min: "0", max: "100", step: "any", inputmode: "decimal" }), key("discount_percent"), "Optional; {discount} shows it."),
        field("Recommended products", textInput(step.products === undefined ? 3 : step.products, optional("products"), { type: "number", min: "0", max: "10", inputmode: "numeric" }), key("products"), "0 to 10, from your catalogue."),
      ]));
      var variants = variantsEditor(step, index);
      if (variants) card.appendChild(variants);
    }
  }

  /* Message variants of a send step (an A/B/n test: 2 to max_variants of {title, body, coupon_code,
     discount_percent, weight}, weights in percent adding up to 100, or none for equal shares): a generic list editor,
     shown on every send step that can be edited, and read-only where a step has variants. A variant's missing
     fields are the step's; keys it has no control for are kept, like a step's. */
  var VARIANT_FIELDS = [["title", "Title", "text"], ["body", "Message", "text"], ["coupon_code", "Coupon code", "text"],
    ["discount_percent", "Discount (%)", "number"], ["weight", "Weight", "number"]];

  function variantsEditor(step, index) {
    if (!Array.isArray(step.variants) && readonly) return null;
    var key = "steps[" + index + "].variants";
    var box = el("details", { class: "jb-variants", open: Array.isArray(step.variants) && step.variants.length ? true : null }, [
      el("summary", { text: "Message variants" + (Array.isArray(step.variants) ? " (" + step.variants.length + ")" : "") }),
      errorSlot(key),
    ]);
    (step.variants || []).forEach(function (variant, v) {
      var row = el("div", { class: "form-row jb-variant", role: "group", "aria-label": "Step " + (index + 1) + ", variant " + (v + 1) });
      VARIANT_FIELDS.forEach(function (f) {
        var input = textInput(variant[f[0]], function (value) {
          if (String(value).trim() === "") delete variant[f[0]];
          else variant[f[0]] = f[2] === "number" && f[0] === "weight" ? wholeOrText(value) : value;
        }, f[2] === "number" ? { type: "number", min: "0", step: "any", inputmode: "decimal" } : {});
        row.appendChild(field(f[1] + " (variant " + (v + 1) + ")", input, key + "[" + v + "]." + f[0]));
      });
      if (!readonly) {
        var remove = el("button", { type: "button", class: "danger small", text: "Remove variant " + (v + 1) });
        remove.addEventListener("click", function () {
          step.variants.splice(v, 1);
          if (step.variants.length < 2) {
            // One message is no test: the one left becomes the step's own message.
            var last = step.variants[0] || {};
            ["title", "body", "coupon_code", "discount_percent"].forEach(function (k) { if (last[k] !== undefined) step[k] = last[k]; });
            delete step.variants;
            delete step.auto_winner;
            say("One message left: it is the step's message again.");
          }
          changed();
          renderSteps();
        });
        row.appendChild(el("div", { class: "field" }, [remove]));
      }
      box.appendChild(row);
    });
    if (!readonly && (step.variants || []).length < (config.max_variants || 5)) {
      var add = el("button", { type: "button", class: "secondary small", text: Array.isArray(step.variants) && step.variants.length ? "Add a variant" : "Make this an A/B test" });
      add.addEventListener("click", function () {
        var message = function () { return { title: step.title || "", body: step.body || "" }; };
        // A test has two variants or more; a new one starts from the step's message, and shares become equal.
        step.variants = Array.isArray(step.variants) && step.variants.length ? step.variants.concat([message()]) : [message(), message()];
        step.variants.forEach(function (variant) { delete variant.weight; });
        changed();
        renderSteps();
        say("Variant added; every variant now gets an equal share (set weights that add up to 100 to change that).");
      });
      box.appendChild(add);
    }
    return box;
  }

  function insertPlaceholder(step, index, text, title, body) {
    var target = lastFocusedMessageField[index] || body;
    var start = target.selectionStart === null || target.selectionStart === undefined ? target.value.length : target.selectionStart;
    var end = target.selectionEnd === null || target.selectionEnd === undefined ? start : target.selectionEnd;
    target.value = target.value.slice(0, start) + text + target.value.slice(end);
    if (target === title) step.title = target.value; else step.body = target.value;
    target.focus();
    target.setSelectionRange(start + text.length, start + text.length);
    changed();
  }

  function links(step, index) {
    var list = el("ul", { class: "jb-links", "aria-label": "Where step " + (index + 1) + " goes" });
    (TARGETS[step.type] || []).forEach(function (t) {
      var target = step[t[0]];
      var name = targetName(index, target);
      var label = t[1].replace(/, go to$/, "").replace(/^Afterwards$/, "Then");
      var to = typeof target === "number" ? el("a", { href: "#jb-step-" + target, text: name }) : el("strong", { text: name });
      list.appendChild(el("li", {}, [el("span", { class: "jb-link-label", text: label + " → " }), to]));
    });
    return list.children.length ? list : null;
  }

  function addRow(afterIndex) {
    var where = afterIndex < 0 ? "at the start" : "after step " + (afterIndex + 1);
    var kind = select({ "aria-label": "Type of the step to add " + where, "data-key": "add-" + afterIndex }, TYPES, "send");
    var button = el("button", { type: "button", class: "secondary small", text: afterIndex < 0 ? (steps.length ? "Add a step at the start" : "Add the first step") : "Add a step here", "aria-label": "Add a step " + where });
    button.addEventListener("click", function () {
      if (steps.length >= config.max_steps) { say("A journey has at most " + config.max_steps + " steps."); return; }
      insertStep(afterIndex + 1, NEW_STEP[kind.value]());
      renderSteps();
      focusKey("type-" + (afterIndex + 1));
      say(TYPE_LABELS[kind.value] + " added as step " + (afterIndex + 2) + ".");
    });
    return el("div", { class: "jb-add" }, [kind, button]);
  }

  function stepCard(step, index) {
    var card = el("li", { class: "card journey-step jb-step", id: "jb-step-" + index, "data-step": index, "data-type": step.type, tabindex: "-1" });
    var known = TYPE_LABELS[step.type];
    var head = el("div", { class: "card-head jb-step-head" }, [
      el("h3", { "data-key": "type-" + index, tabindex: "-1", text: "Step " + (index + 1) + " · " + (known || step.type) }),
    ]);
    if (!readonly) {
      var tools = el("div", { class: "jb-tools" });
      [["up", "↑", "Move step " + (index + 1) + " up", index === 0], ["down", "↓", "Move step " + (index + 1) + " down", index === steps.length - 1]].forEach(function (m) {
        var b = el("button", { type: "button", class: "secondary small", "aria-label": m[2], title: m[2], text: m[1], disabled: m[3], "data-key": "move-" + m[0] + "-" + index });
        b.addEventListener("click", function () { moveStep(index, m[0] === "up" ? index - 1 : index + 1); });
        tools.appendChild(b);
      });
      var remove = el("button", { type: "button", class: "danger small", "aria-label": "Remove step " + (index + 1), text: "Remove" });
      remove.addEventListener("click", function () {
        removeStep(index);
        renderSteps();
        say("Step " + (index + 1) + " removed; links to it now go to the step that followed it.");
      });
      tools.appendChild(remove);
      head.appendChild(tools);
    }
    card.appendChild(head);
    card.appendChild(errorSlot("steps[" + index + "]"));
    if (!known) card.appendChild(el("p", { class: "small muted", text: "A step of a type this page does not know: it is kept as it is." }));
    stepFields(step, index, card);
    var targets = TARGETS[step.type] || [];
    if (targets.length) {
      card.appendChild(el("div", { class: "form-row jb-targets" }, targets.map(function (t) { return targetField(step, index, t[0], t[1]); })));
    }
    // A key the page has no control for (`next` on a branch, say) still has a slot for the server's refusal.
    TARGET_KEYS.forEach(function (k) {
      if (!targets.some(function (t) { return t[0] === k; }) && step[k] !== undefined) card.appendChild(errorSlot("steps[" + index + "]." + k));
    });
    var linkList = links(step, index);
    if (linkList) card.appendChild(linkList);
    return card;
  }

  function renderSteps() {
    var focused = document.activeElement && stepsBox.contains(document.activeElement) ? document.activeElement.getAttribute("data-key") : null;
    startGroup("steps");
    stepsBox.innerHTML = "";
    stepsBox.appendChild(el("legend", { text: "Steps" }));
    stepsBox.appendChild(el("p", { class: "small muted", text: "Consumers go down the steps in order; a wait for an event and a branch may jump ahead to a later step or exit. Placeholders in messages are the campaigns', plus {carted_product}." }));
    stepsBox.appendChild(errorSlot("steps"));
    if (!readonly) stepsBox.appendChild(addRow(-1));
    var flow = el("ol", { class: "journey-flow jb-flow" });
    steps.forEach(function (step, index) {
      var card = stepCard(step, index);
      if (!readonly) card.appendChild(addRow(index));
      flow.appendChild(card);
    });
    stepsBox.appendChild(flow);
    if (!steps.length) stepsBox.appendChild(el("p", { class: "empty", text: "No steps yet: add the first one." }));
    if (focused) focusKey(focused);
  }

  function focusKey(key) {
    var target = host.querySelector('[data-key="' + key + '"]');
    if (target) target.focus();
  }

  /* ---------------------------------------------------------------- adding, removing, moving: targets follow */
  function retarget(map) {
    steps.forEach(function (step) {
      TARGET_KEYS.forEach(function (k) {
        if (typeof step[k] === "number") {
          var moved = map(step[k]);
          if (moved === null) delete step[k]; else step[k] = moved;
        }
      });
    });
  }

  function insertStep(at, step) {
    syncConditions();
    retarget(function (t) { return t >= at ? t + 1 : t; });
    steps.splice(at, 0, step);
    changed();
  }

  function removeStep(at) {
    syncConditions();
    steps.splice(at, 1);
    // A link to the removed step goes to the step that followed it; to the end's "exit" if it was the last.
    retarget(function (t) { return t > at ? t - 1 : t === at ? (at < steps.length ? at : "exit") : t; });
    changed();
  }

  function moveStep(from, to) {
    syncConditions();
    var swap = function (t) { return t === from ? to : t === to ? from : t; };
    var moved = steps.slice();
    moved[from] = steps[to];
    moved[to] = steps[from];
    var problem = null;
    moved.forEach(function (step, index) {
      TARGET_KEYS.forEach(function (k) {
        if (problem || typeof step[k] !== "number") return;
        var target = swap(step[k]);
        if (target <= index) {
          problem = "Step " + (from + 1) + " cannot move " + (to < from ? "up" : "down") + ": step " + (index + 1) + " would jump back to step " + (target + 1) +
            " (jumps go forward only). Change that link first.";
        }
      });
    });
    if (problem) { say(problem, true); return; }
    steps = moved;
    retarget(swap);
    changed();
    renderSteps();
    focusKey("move-" + (to < from ? "up" : "down") + "-" + to);
    if (!host.querySelector('[data-key="move-' + (to < from ? "up" : "down") + "-" + to + '"]:not([disabled])')) focusKey("type-" + to);
    say("Step moved to position " + (to + 1) + ".");
  }

  /* ---------------------------------------------------------------- saving, errors, unsaved changes */
  var status = el("p", { class: "small", role: "status", "aria-live": "polite" });
  var announce = el("p", { class: "visually-hidden", role: "status", "aria-live": "polite" });
  var saveButton = el("button", { type: "button", text: config.journey.id ? "Save journey" : "Create journey" });
  var baseline = null;
  var saving = false;

  function say(message, warn) {
    announce.textContent = "";
    setTimeout(function () { announce.textContent = message; }, 30);
    status.textContent = message;
    status.classList.toggle("jb-warn", !!warn);
  }

  function isDirty() {
    return baseline !== null && JSON.stringify(payload()) !== baseline;
  }

  function changed() {
    var dirty = isDirty();
    saveBar.classList.toggle("jb-dirty", dirty);
    dirtyBadge.hidden = !dirty;
  }
  var dirtyBadge = el("span", { class: "badge warn", text: "Unsaved changes", hidden: true });

  function clearErrors() {
    errorBox.hidden = true;
    errorBox.textContent = "";
    host.querySelectorAll("[data-error-for]").forEach(function (slot) {
      slot.hidden = true;
      slot.textContent = "";
      if (slot.parentNode.classList) slot.parentNode.classList.remove("has-error");
    });
    host.querySelectorAll("[aria-invalid][data-field]").forEach(function (c) { c.removeAttribute("aria-invalid"); });
  }

  function humanField(fieldName) {
    var m = /^steps\[(\d+)\](?:\.(\w+))?$/.exec(fieldName || "");
    if (!m) return fieldName;
    return "step " + (Number(m[1]) + 1) + (m[2] ? " (" + m[2].replace(/_/g, " ") + ")" : "");
  }

  function showRefusal(error) {
    var fieldName = error.field || "";
    var message = error.message || "The journey could not be saved.";
    var local = fieldName && message.indexOf(fieldName + ": ") === 0 ? message.slice(fieldName.length + 2) : message;
    var slot = null;
    var candidates = [fieldName];
    var m = /^((steps\[\d+\])\.\w+)\[/.exec(fieldName);
    if (m) candidates.push(m[1]);
    m = /^(steps\[\d+\])\./.exec(fieldName);
    if (m) candidates.push(m[1]);
    if (/^steps/.test(fieldName)) candidates.push("steps");
    for (var i = 0; i < candidates.length && !slot; i++) {
      if (candidates[i]) slot = host.querySelector('[data-error-for="' + candidates[i] + '"]');
    }
    errorBox.textContent = "Not saved: " + (fieldName ? humanField(fieldName) + ": " + local : message);
    errorBox.hidden = false;
    if (!slot) { errorBox.focus(); return; }
    slot.textContent = local;
    slot.hidden = false;
    slot.parentNode.classList.add("has-error");
    var control = slot.parentNode.querySelector('[data-field="' + fieldName + '"]');
    if (control) {
      control.setAttribute("aria-invalid", "true");
      control.focus();
    } else {
      slot.parentNode.focus();
    }
    slot.scrollIntoView({ block: "center" });
  }

  // Signing in again (in another tab, as a signed_out refusal asks) renews the CSRF token: the cookie has the new
  // one, so a save after that goes through without reloading the page and losing the work on it.
  function currentCsrf() {
    var m = /(?:^|;\s*)csrftoken=([^;]+)/.exec(document.cookie);
    return m ? decodeURIComponent(m[1]) : csrf;
  }

  function save() {
    clearErrors();
    var body = payload();
    saveButton.disabled = true;
    say("Saving…");
    fetch(config.urls.save, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": currentCsrf() },
      body: JSON.stringify(body),
    })
      .then(function (r) { return r.json().then(function (data) { return { status: r.status, data: data }; }); })
      .then(function (res) {
        if (res.status === 200 || res.status === 201) {
          saving = true;
          say("Saved.");
          window.location.assign(res.data.edit_url);
          return;
        }
        saveButton.disabled = false;
        say("Not saved.", true);
        showRefusal(res.data.error || {});
      })
      .catch(function () {
        saveButton.disabled = false;
        say("The journey could not be sent: check your connection and save again. Nothing was saved.", true);
      });
  }

  function renderSaveBar() {
    saveBar.innerHTML = "";
    if (!readonly) {
      saveButton.addEventListener("click", save);
      saveBar.appendChild(saveButton);
    }
    var back = config.journey.id ? el("a", { class: "button secondary", href: config.urls.detail || config.urls.list, text: readonly ? "Back" : "Cancel" }) : el("a", { class: "button secondary", href: config.urls.list, text: "Cancel" });
    saveBar.appendChild(back);
    saveBar.appendChild(dirtyBadge);
    saveBar.appendChild(status);
    saveBar.appendChild(announce);
  }

  window.addEventListener("beforeunload", function (e) {
    if (saving || readonly || !isDirty()) return;
    e.preventDefault();
    e.returnValue = "";
  });

  renderSettings();
  renderSteps();
  renderSaveBar();
  baseline = JSON.stringify(payload());
  loadCatalogue();
})();
