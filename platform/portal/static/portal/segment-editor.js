/* The segment editor: tag autocomplete, a debounced live estimate with errors shown at their position,
   and a visual rule builder that is a second view of the same expression (nested groups, every kind of term,
   undo), kept in step with the text both ways.

   Markup contract (templates/portal/segments/_editor.html):
     textarea[data-segment-editor] with data-estimate-url, data-tags-url and data-values-url (the categories and
     brands the merchant may name in actions, offered inside category="..." and brand="...")
     #expr-suggestions (listbox), #expr-error (error box), [data-estimate] region with
     [data-estimate-size], [data-estimate-reachable], [data-estimate-took], and the builder in [data-rule-builder]
     (data-parse-url; [data-builder-tree], [data-builder-problem], [data-builder-status], [data-builder-lists],
     [data-undo], [data-redo]) with its vocabulary in script#segment-vocabulary and segment-language.js loaded first.
   Without JavaScript the form still submits and the server validates the expression. */
(function () {
  "use strict";

  var editor = document.querySelector("textarea[data-segment-editor]");
  if (!editor) return;

  var estimateUrl = editor.getAttribute("data-estimate-url");
  var tagsUrl = editor.getAttribute("data-tags-url");
  var valuesUrl = editor.getAttribute("data-values-url");
  var list = document.getElementById("expr-suggestions");
  var errorBox = document.getElementById("expr-error");
  var estimateBox = document.querySelector("[data-estimate]");
  var sizeOut = document.querySelector("[data-estimate-size]");
  var reachOut = document.querySelector("[data-estimate-reachable]");
  var tookOut = document.querySelector("[data-estimate-took]");
  var statusOut = document.querySelector("[data-estimate-status]");
  var csrf = (document.querySelector("input[name=csrfmiddlewaretoken]") || {}).value || "";

  var KEYWORDS = ["AND", "OR", "NOT"];
  var ACTIONS = [
    { insert: 'purchased(category="", within="30d")', label: "bought in a category recently", caret: 20 },
    { insert: 'viewed(category="", within="7d")', label: "viewed a category recently", caret: 17 },
    { insert: 'carted(category="", within="7d")', label: "added to cart recently", caret: 17 },
    { insert: 'favourited(category="")', label: "favourited a category", caret: 21 },
  ];
  var tags = []; // [{family, value, label, definition, reach}]
  var families = {}; // family -> [tag]

  /* ---------------------------------------------------------------- the catalogue */
  function loadTags() {
    if (!tagsUrl) return Promise.resolve();
    return fetch(tagsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { tags: [] }; })
      .then(function (data) {
        tags = data.tags || [];
        families = {};
        tags.forEach(function (t) { (families[t.family] = families[t.family] || []).push(t); });
        builder.refreshOptions(families);
      })
      .catch(function () { /* autocomplete is a help; the editor works without it */ });
  }

  function quoteValue(value) {
    return /^[^\s():,="']+$/.test(value) ? value : '"' + value.replace(/\\/g, "\\\\").replace(/"/g, '\\"') + '"';
  }

  /* ---------------------------------------------------------------- autocomplete */
  var items = [];
  var active = -1;
  var tokenStart = 0;

  function currentToken() {
    var caret = editor.selectionStart;
    var text = editor.value.slice(0, caret);
    var match = /[^\s(),=]*$/.exec(text);
    tokenStart = caret - match[0].length;
    return match[0];
  }

  function suggestionsFor(token) {
    var lower = token.toLowerCase();
    var colon = token.indexOf(":");
    if (!token) return [];
    if (colon > 0) {
      var family = lower.slice(0, colon);
      var prefix = lower.slice(colon + 1).replace(/^["']/, "");
      var values = families[family] || [];
      var byValue = values.filter(function (t) { return t.value.toLowerCase().indexOf(prefix) === 0; });
      var byLabel = values.filter(function (t) {
        return byValue.indexOf(t) === -1 && prefix && t.label.toLowerCase().indexOf(prefix) !== -1;
      });
      return byValue.concat(byLabel)
        .slice(0, 12)
        .map(function (t) {
          return { insert: t.family + ":" + quoteValue(t.value), text: t.family + ":" + t.value, hint: t.label + " · " + t.reach };
        });
    }
    var out = [];
    Object.keys(families).sort().forEach(function (f) {
      if (f.indexOf(lower) === 0) out.push({ insert: f + ":", text: f + ":", hint: families[f].length + " values", reopen: true });
    });
    KEYWORDS.forEach(function (k) {
      if (k.toLowerCase().indexOf(lower) === 0 && k.toLowerCase() !== lower) out.push({ insert: k + " ", text: k, hint: "keyword" });
    });
    ACTIONS.forEach(function (a) {
      if (a.insert.indexOf(lower) === 0) out.push({ insert: a.insert, text: a.insert, hint: a.label, caret: a.caret });
    });
    if ("segment:".indexOf(lower) === 0) out.push({ insert: "segment:", text: "segment:ID", hint: "one of your saved segments" });
    return out.slice(0, 12);
  }

  function closeList() {
    list.hidden = true;
    items = [];
    active = -1;
    editor.setAttribute("aria-expanded", "false");
    editor.removeAttribute("aria-activedescendant");
  }

  function renderList() {
    list.innerHTML = "";
    if (!items.length) { closeList(); return; }
    items.forEach(function (item, i) {
      var li = document.createElement("li");
      li.id = "expr-sugg-" + i;
      li.setAttribute("role", "option");
      li.setAttribute("aria-selected", i === active ? "true" : "false");
      var code = document.createElement("code");
      code.textContent = item.text;
      var hint = document.createElement("span");
      hint.className = "sugg-label";
      hint.textContent = item.hint;
      li.appendChild(code);
      li.appendChild(hint);
      li.addEventListener("mousedown", function (e) { e.preventDefault(); accept(i); });
      list.appendChild(li);
    });
    list.hidden = false;
    editor.setAttribute("aria-expanded", "true");
    if (active >= 0) {
      editor.setAttribute("aria-activedescendant", "expr-sugg-" + active);
      list.children[active].scrollIntoView({ block: "nearest" });
    }
  }

  /* Inside category="..." or brand="...": the values the server says this merchant may target. */
  var valueRequest = 0;

  function quotedArgument() {
    var caret = editor.selectionStart;
    var match = /\b(category|brand)\s*=\s*"([^"\\]*)$/i.exec(editor.value.slice(0, caret));
    if (!match) return null;
    return { argument: match[1].toLowerCase(), prefix: match[2], start: caret - match[2].length };
  }

  var fetchValues = window.RuleBuilder ? window.RuleBuilder.valueFetcher(valuesUrl) : function () { return Promise.resolve([]); };

  function suggestValues(context) {
    var request = ++valueRequest;
    fetchValues(context.argument, context.prefix).then(function (values) {
      if (request !== valueRequest) return; // typed on since
      var closing = editor.value.charAt(editor.selectionStart) === '"';
      tokenStart = context.start;
      items = values.map(function (value) {
        var escaped = value.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
        var insert = closing ? escaped : escaped + '"';
        return { insert: insert, text: value, hint: "a " + context.argument + " you may target", caret: escaped.length + 1 };
      });
      active = items.length ? 0 : -1;
      renderList();
    });
  }

  function suggest() {
    var context = valuesUrl ? quotedArgument() : null;
    if (context) { suggestValues(context); return; }
    valueRequest++;
    items = suggestionsFor(currentToken());
    active = items.length ? 0 : -1;
    renderList();
  }

  function accept(i) {
    var item = items[i];
    if (!item) return;
    var caret = editor.selectionStart;
    var before = editor.value.slice(0, tokenStart);
    var after = editor.value.slice(caret);
    var insert = item.insert;
    if (!item.reopen && !item.caret && !/^\s/.test(after) && !/ $/.test(insert)) insert += " ";
    editor.value = before + insert + after;
    var pos = before.length + (item.caret || insert.length);
    editor.setSelectionRange(pos, pos);
    editor.focus();
    if (item.reopen) suggest(); else closeList();
    scheduleEstimate();
    builder.textChanged();
  }

  editor.addEventListener("keydown", function (e) {
    if (list.hidden || !items.length) {
      if (e.key === " " && e.ctrlKey) { e.preventDefault(); suggest(); }
      return;
    }
    if (e.key === "ArrowDown") { e.preventDefault(); active = (active + 1) % items.length; renderList(); }
    else if (e.key === "ArrowUp") { e.preventDefault(); active = (active - 1 + items.length) % items.length; renderList(); }
    else if (e.key === "Enter" || e.key === "Tab") { if (active >= 0) { e.preventDefault(); accept(active); } }
    else if (e.key === "Escape") { e.preventDefault(); closeList(); }
  });
  editor.addEventListener("input", function () { suggest(); scheduleEstimate(); builder.textChanged(); });
  editor.addEventListener("blur", function () { setTimeout(closeList, 120); });
  editor.addEventListener("click", closeList);

  /* ---------------------------------------------------------------- live estimate */
  var timer = null;
  var inflight = null;
  var sequence = 0;

  function scheduleEstimate() {
    clearTimeout(timer);
    timer = setTimeout(runEstimate, 350);
  }

  // The form's scope ("Count consumers": the whole marketplace or my customers): the estimate counts in it.
  var scopeSelect = document.getElementById("id_scope");
  if (scopeSelect) scopeSelect.addEventListener("change", scheduleEstimate);

  function showError(error, text) {
    if (!error) { errorBox.hidden = true; errorBox.textContent = ""; editor.removeAttribute("aria-invalid"); return; }
    errorBox.textContent = window.RuleBuilder.errorText(error, text);
    errorBox.hidden = false;
    editor.setAttribute("aria-invalid", "true");
  }

  function setEstimate(size, reach, took, status) {
    sizeOut.textContent = size;
    reachOut.textContent = reach;
    if (tookOut) tookOut.textContent = took;
    if (statusOut) statusOut.textContent = status;
  }

  function budgetNote(budget) {
    if (!budget || !budget.allowance) return "";
    var left = Math.max(0, Math.round(100 * budget.remaining / budget.allowance));
    return " Privacy budget left this period: " + left + " % (renews " + budget.renews_at.slice(0, 10) + ").";
  }

  function runEstimate() {
    var text = editor.value;
    if (!text.trim()) {
      showError(null);
      setEstimate("—", "—", "", "Type an expression to see how many consumers match.");
      return;
    }
    if (inflight) inflight.abort();
    inflight = window.AbortController ? new AbortController() : null;
    var mine = ++sequence;
    estimateBox.setAttribute("aria-busy", "true");
    fetch(estimateUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
      body: JSON.stringify(scopeSelect ? { expression: text, scope: scopeSelect.value } : { expression: text }),
      signal: inflight ? inflight.signal : undefined,
    })
      .then(function (r) { return r.json().then(function (body) { return { status: r.status, body: body }; }); })
      .then(function (res) {
        if (mine !== sequence) return; // a newer keystroke's answer is on its way
        estimateBox.setAttribute("aria-busy", "false");
        if (res.status === 429) { // the privacy budget is spent: the message says when it renews
          showError(null);
          setEstimate("—", "—", "", res.body.error.message);
          return;
        }
        if (res.body.error) {
          showError(window.RuleBuilder.isRefusal(res.body.error) ? null : res.body.error, text);
          setEstimate("—", "—", "", res.body.error.message);
          return;
        }
        showError(null);
        sizeOut.classList.toggle("text", !!res.body.size.hidden);
        reachOut.classList.toggle("text", !!res.body.reachable.hidden);
        var bound = res.body.size.error_bound ? " (about; ± " + res.body.size.error_bound.toLocaleString() + ")" : "";
        setEstimate(res.body.size.display, res.body.reachable.display, "in " + res.body.took_ms + " ms",
          "Matches " + res.body.size.display + bound + " consumers" +
          (res.body.scope_label ? " " + res.body.scope_label : "") + "; " + res.body.reachable.display +
          " can be messaged. Estimates while typing are coarse previews; the saved segment's size is precise." +
          budgetNote(res.body.budget));
      })
      .catch(function (err) {
        if (err && err.name === "AbortError") return;
        estimateBox.setAttribute("aria-busy", "false");
        setEstimate("—", "—", "", "The estimate could not be fetched. Check your connection and keep typing.");
      });
  }

  /* ---------------------------------------------------------------- visual rule builder (rule-builder.js) */
  var vocabularyScript = document.getElementById("segment-vocabulary");
  var builder = window.RuleBuilder && vocabularyScript
    ? window.RuleBuilder.mount({
      root: document.querySelector("[data-rule-builder]"),
      editor: editor,
      vocabulary: JSON.parse(vocabularyScript.textContent),
      csrf: csrf,
      families: families,
      fetchValues: valuesUrl ? fetchValues : null,
      showError: showError,
      onChange: scheduleEstimate,
    })
    : { refreshOptions: function () {}, textChanged: function () {} };

  loadTags();
  if (editor.value.trim()) runEstimate();
})();
