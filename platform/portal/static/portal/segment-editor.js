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
        builder.refreshOptions();
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
  var valueCache = {};
  var valueRequest = 0;

  function quotedArgument() {
    var caret = editor.selectionStart;
    var match = /\b(category|brand)\s*=\s*"([^"\\]*)$/i.exec(editor.value.slice(0, caret));
    if (!match) return null;
    return { argument: match[1].toLowerCase(), prefix: match[2], start: caret - match[2].length };
  }

  function fetchValues(argument, prefix) {
    var key = argument + "\u0000" + prefix;
    if (valueCache[key]) return Promise.resolve(valueCache[key]);
    var url = valuesUrl + "?argument=" + encodeURIComponent(argument) + "&prefix=" + encodeURIComponent(prefix);
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : { values: [] }; })
      .then(function (data) { valueCache[key] = data.values || []; return valueCache[key]; })
      .catch(function () { return []; });
  }

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
    var lines = text.split("\n");
    var lineNo = error.line || 1;
    var column = error.column || (typeof error.offset === "number" ? error.offset + 1 : 1);
    var line = lines[lineNo - 1] || "";
    var where = lineNo > 1 ? "line " + lineNo + ", column " + column : "column " + column;
    var message = /column \d+/.test(error.message) ? error.message : error.message + " (" + where + ")";
    errorBox.textContent = line + "\n" + " ".repeat(Math.max(0, column - 1)) + "^\n" + message;
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
          showError(res.body.error, text);
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

  /* ---------------------------------------------------------------- visual rule builder
     A second view of the same language (segment-language.js): the builder edits a tree; every change renders the
     canonical text into the editor; typing in the editor is parsed by the server (segments/parse/) into the tree.
     Text that does not parse never touches the tree and the tree never overwrites it; Undo steps back through both. */
  var builder = (function () {
    var root = document.querySelector("[data-rule-builder]");
    var L = window.SegmentLanguage;
    var vocabularyScript = document.getElementById("segment-vocabulary");
    if (!root || !L || !vocabularyScript) return { refreshOptions: function () {}, textChanged: function () {} };
    var vocabulary = JSON.parse(vocabularyScript.textContent);
    var parseUrl = root.getAttribute("data-parse-url");
    var treeBox = root.querySelector("[data-builder-tree]");
    var problemBox = root.querySelector("[data-builder-problem]");
    var announce = root.querySelector("[data-builder-status]");
    var undoButton = root.querySelector("[data-undo]");
    var redoButton = root.querySelector("[data-redo]");
    var lists = root.querySelector("[data-builder-lists]");
    var argSpecs = {};
    vocabulary.arguments.forEach(function (a) { argSpecs[a.name] = a; });
    var actionLabels = {};
    vocabulary.actions.forEach(function (a) { actionLabels[a.name] = a.label; });

    var tree = L.group("and", []);
    var lastText = null; // the text the tree was last read from or written as
    var problem = null; // the current text's syntax error, if it has one
    var history = [];
    var at = -1;
    var parseTimer = null;
    var parseSeq = 0;
    var canonicalTimer = null;
    var uid = 0;

    /* ---- talking to the server */
    function post(url, body) {
      return fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrf },
        body: JSON.stringify(body),
      }).then(function (r) { return r.json(); });
    }

    /* ---- history */
    var dirty = false; // the builder changed (typing in a rule's field) since the last step was recorded
    var dirtyTimer = null;

    function snapshot(text) {
      return { text: text, tree: L.clone(tree), problem: problem, lastText: lastText };
    }

    function record(text) {
      dirty = false;
      clearTimeout(dirtyTimer);
      var entry = snapshot(text === undefined ? editor.value : text);
      var top = history[at];
      if (top && top.text === entry.text && JSON.stringify(top.tree) === JSON.stringify(entry.tree)) return;
      history = history.slice(0, at + 1);
      history.push(entry);
      if (history.length > 100) history.shift();
      at = history.length - 1;
      updateUndo();
    }

    function updateUndo() {
      undoButton.disabled = at <= 0 && !(history[at] && editor.value !== history[at].text);
      redoButton.disabled = at >= history.length - 1;
    }

    function restore(entry) {
      clearTimeout(parseTimer);
      parseSeq++;
      tree = L.clone(entry.tree);
      editor.value = entry.text;
      lastText = entry.lastText;
      setProblem(entry.problem, entry.text, false);
      render();
      scheduleEstimate();
    }

    function undo() {
      var top = history[at];
      if (dirty) record();
      else if (top && editor.value !== top.text) {
        // Typing not yet read: keep it as a step, so Redo brings it back.
        clearTimeout(parseTimer);
        record();
      }
      if (at <= 0) return;
      at -= 1;
      restore(history[at]);
      updateUndo();
      say("Undone.");
    }

    function redo() {
      if (at >= history.length - 1) return;
      at += 1;
      restore(history[at]);
      updateUndo();
      say("Redone.");
    }

    function say(message) {
      announce.textContent = "";
      setTimeout(function () { announce.textContent = message; }, 30);
    }

    /* ---- the text's problems */
    function setProblem(error, text, fromBuilder) {
      problem = error || null;
      if (!error) { problemBox.hidden = true; problemBox.textContent = ""; return; }
      var where = error.line > 1 ? "line " + error.line + ", column " + error.column : "column " + (error.column || 1);
      problemBox.textContent = fromBuilder
        ? "A rule is not complete yet (" + where + " of the expression): " + error.message.replace(/ at (line \d+, )?column \d+$/, "") + "."
        : "The expression does not read correctly at " + where + ": " + error.message.replace(/ at (line \d+, )?column \d+$/, "") +
          ". The rules below still show the last version that did; your text is kept as typed. Fix it, or press Undo.";
      problemBox.hidden = false;
      showError(error, text);
    }

    /* ---- text -> tree */
    function adopt(definition) {
      var node = L.fromJson(definition);
      return node.t === "and" || node.t === "or" ? node : L.group("and", [node]);
    }

    function parseText() {
      clearTimeout(parseTimer);
      var text = editor.value;
      if (text === lastText) { updateUndo(); return; }
      if (!text.trim()) {
        tree = L.group("and", []);
        lastText = text;
        setProblem(null);
        render();
        record();
        return;
      }
      var mine = ++parseSeq;
      post(parseUrl, { expression: text })
        .then(function (body) {
          if (mine !== parseSeq || editor.value !== text) return; // typed on since
          if (body.error) {
            setProblem(body.error, text, false);
          } else {
            tree = adopt(body.definition);
            lastText = text;
            setProblem(null);
            render();
          }
          record();
        })
        .catch(function () { /* offline: the estimate says so; the tree stays as it was */ });
    }

    function textChanged() {
      if (dirty) record(lastText); // the builder's last edit is a step of its own
      clearTimeout(parseTimer);
      parseTimer = setTimeout(parseText, 400);
      updateUndo();
    }

    /* ---- tree -> text */
    function changed(options) {
      options = options || {};
      var text = L.toText(tree, vocabulary);
      clearTimeout(parseTimer);
      parseSeq++;
      editor.value = text;
      lastText = text;
      setProblem(null);
      showError(null);
      if (options.render !== false) render();
      if (options.record !== false) record();
      else {
        dirty = true;
        clearTimeout(dirtyTimer);
        dirtyTimer = setTimeout(function () { if (dirty) record(); }, 800);
      }
      updateUndo();
      scheduleEstimate();
      clearTimeout(canonicalTimer);
      canonicalTimer = setTimeout(function () { checkCanonical(text); }, 300);
    }

    // The server has the last word on the canonical text (an argument the vocabulary describes loosely, say).
    function checkCanonical(text) {
      if (!text.trim()) return;
      post(parseUrl, { expression: text }).then(function (body) {
        if (editor.value !== text) return;
        if (body.error) { setProblem(body.error, text, true); return; }
        if (body.expression !== text) {
          editor.value = body.expression;
          lastText = body.expression;
          if (history[at] && history[at].text === text) history[at].text = history[at].lastText = body.expression;
          scheduleEstimate();
        }
      }).catch(function () {});
    }

    /* ---- finding nodes */
    function locate(id) {
      var found = null;
      function walk(node, parent, index) {
        if (found) return;
        if (node._id === id) { found = { node: node, parent: parent, index: index }; return; }
        if (node.t === "and" || node.t === "or") node.items.forEach(function (item, i) { walk(item, node, i); });
        else if (node.t === "not") walk(node.item, node, null);
      }
      walk(tree, null, null);
      return found;
    }

    function replace(place, replacement) {
      if (!place.parent) tree = replacement;
      else if (place.parent.t === "not") place.parent.item = replacement;
      else place.parent.items[place.index] = replacement;
    }

    function removeSlot(id) {
      var place = locate(id);
      if (!place || !place.parent) return;
      if (place.parent.t === "not") { removeSlot(place.parent._id); return; }
      place.parent.items.splice(place.index, 1);
    }

    /* ---- defaults */
    function firstFamily() {
      var names = Object.keys(families).sort();
      return names.length ? names[0] : "";
    }

    function newRule() {
      var family = firstFamily();
      var values = families[family] || [];
      return L.atom({ t: "tag", family: family, value: values.length ? values[0].value : "" });
    }

    function tagOf(family, value) {
      var values = families[family] || [];
      for (var i = 0; i < values.length; i++) if (values[i].value === value) return values[i];
      return null;
    }

    /* ---- drawing */
    function el(tag, attrs, children) {
      var node = document.createElement(tag);
      Object.keys(attrs || {}).forEach(function (k) {
        if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) return;
        if (k === "text") node.textContent = attrs[k];
        else node.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
      });
      (children || []).forEach(function (c) { if (c) node.appendChild(c); });
      return node;
    }

    function select(attrs, options, current) {
      var s = el("select", attrs);
      options.forEach(function (o) {
        var opt = el("option", { value: o[0], text: o[1] });
        if (String(o[0]) === String(current)) opt.selected = true;
        s.appendChild(opt);
      });
      return s;
    }

    function field(label, control, extra, className) {
      var id = "rb-" + (++uid);
      control.id = id;
      return el("div", { class: "field " + (className || "") }, [el("label", { for: id, text: label }), control].concat(extra || []));
    }

    function renderSlot(slot, number, isRoot) {
      var negated = slot.t === "not" && slot.item.t !== "not";
      var node = negated ? slot.item : slot;
      if (node.t === "not") return renderNotBox(node, number);
      if (node.t === "and" || node.t === "or") return renderGroup(node, slot, negated, number, isRoot);
      return renderRule(node, slot, negated, number);
    }

    function negSelect(slot, negated, what) {
      return field(
        what === "group" ? "This group" : "Include",
        select({ "data-k": "neg", "data-node": slot._id, "data-key": slot._id + ":neg" },
          [["", "Include"], ["not", "Exclude (NOT)"]],
          negated ? "not" : ""),
        null, "narrow"
      );
    }

    function renderNotBox(node, number) {
      // NOT NOT x: shown as it is, so nothing the text says is lost; the inner NOT can be removed.
      return el("div", { class: "rb-not", role: "group", "aria-label": "NOT " + number }, [
        el("span", { class: "rb-badge", text: "NOT" }),
        renderSlot(node.item, number, false),
        el("button", { type: "button", class: "secondary small", "data-act": "unwrap", "data-node": node._id, "data-key": node._id + ":unwrap", text: "Remove this NOT" }),
      ]);
    }

    function renderGroup(node, slot, negated, number, isRoot) {
      var title = isRoot ? "All rules" : "Group " + number;
      var head = el("div", { class: "rb-group-head" }, [
        isRoot ? null : negSelect(slot, negated, "group"),
        field(isRoot ? "Match consumers who meet" : "Match", select(
          { "data-k": "op", "data-node": node._id, "data-key": node._id + ":op" },
          [["and", "all of these (AND)"], ["or", "any of these (OR)"]], node.t), null, "narrow-wide"),
      ]);
      var list = el("ol", { class: "rb-items" });
      node.items.forEach(function (item, i) {
        list.appendChild(el("li", {}, [renderSlot(item, (isRoot ? "" : number + ".") + (i + 1), false)]));
      });
      var actions = el("div", { class: "rb-actions" }, [
        el("button", { type: "button", class: "secondary small", "data-act": "add-rule", "data-node": node._id, "data-key": node._id + ":add-rule", text: "Add a rule" }),
        el("button", { type: "button", class: "secondary small", "data-act": "add-group", "data-node": node._id, "data-key": node._id + ":add-group", text: "Add a group" }),
        isRoot ? null : el("button", { type: "button", class: "danger small", "data-act": "remove", "data-node": slot._id, "data-key": slot._id + ":remove", "aria-label": "Remove group " + number, text: "Remove group" }),
      ]);
      return el("section", { class: "rb-group" + (negated ? " rb-negated" : "") + (isRoot ? " rb-root" : ""), role: "group", "aria-label": title }, [
        head,
        node.items.length ? list : el("p", { class: "small muted rb-empty", text: isRoot ? "No rules yet: add one, or type the expression above." : "This group is empty." }),
        actions,
      ]);
    }

    function renderRule(node, slot, negated, number) {
      var key = function (k) { return node._id + ":" + k; };
      if (node.t === "kept") {  // a condition the builder has no controls for: shown, kept, edited in the text
        return el("div", { class: "rule rb-rule rb-kept" + (negated ? " rb-negated" : ""), role: "group", "aria-label": "Rule " + number }, [
          negSelect(slot, negated, "rule"),
          field("Condition (edit it in the text)", el("output", { class: "mono long-text", text: L.jsonText(node.json, vocabulary) }), null, "wide"),
          el("button", { type: "button", class: "danger small rb-remove", "data-act": "remove", "data-node": slot._id, "data-key": slot._id + ":remove",
            "aria-label": "Remove rule " + number, text: "Remove" }),
        ]);
      }
      var parts = [
        negSelect(slot, negated, "rule"),
        field("Kind", select({ "data-k": "kind", "data-node": node._id, "data-key": key("kind") },
          [["tag", "Tag"], ["action", "Behaviour"], ["segment", "Saved segment"]], node.t), null, "narrow"),
      ];
      if (node.t === "tag") {
        var names = Object.keys(families).sort();
        if (node.family && names.indexOf(node.family) === -1) names.unshift(node.family);
        parts.push(field("Family", select({ "data-k": "family", "data-node": node._id, "data-key": key("family") },
          names.map(function (f) { return [f, families[f] ? f.replace(/_/g, " ") : f + " (not in the catalogue)"]; }), node.family)));
        var tag = tagOf(node.family, node.value);
        var hintId = "rb-hint-" + node._id;
        var invalid = !tag && node.value !== "" && families[node.family];
        var hint = el("div", { class: "help rb-hint" + (invalid ? " rb-warn" : ""), id: hintId,
          text: tag ? tag.label + " · reach " + tag.reach : invalid ? "Not a value of " + node.family.replace(/_/g, " ") + ": choose one from the list." : "" });
        parts.push(field("Value", el("input", { type: "text", value: node.value, list: "rb-values-" + node.family, autocomplete: "off", spellcheck: "false",
          "data-k": "value", "data-node": node._id, "data-key": key("value"), "aria-describedby": hintId, "aria-invalid": invalid ? "true" : null }), [hint]));
      } else if (node.t === "segment") {
        var options = vocabulary.segments.map(function (s) { return [String(s.id), s.name + " (#" + s.id + ")"]; });
        if (node.id && !options.some(function (o) { return o[0] === String(node.id); })) options.unshift([String(node.id), "Segment #" + node.id]);
        if (!node.id) options.unshift(["", "choose a segment"]);
        parts.push(field("Segment", select({ "data-k": "segment", "data-node": node._id, "data-key": key("segment") }, options, node.id), null, "wide"));
      } else {
        var actions = vocabulary.actions.map(function (a) { return [a.name, a.label]; });
        if (!actionLabels[node.action]) actions.unshift([node.action, node.action]);
        parts.push(field("Did", select({ "data-k": "action", "data-node": node._id, "data-key": key("action") }, actions, node.action), null, "narrow"));
        node.args.forEach(function (pair, i) {
          var spec = argSpecs[String(pair[0]).toLowerCase()] || { name: pair[0], label: pair[0], help: "", kind: typeof pair[1] === "number" ? "number" : "text", suggest: "" };
          var listId = spec.suggest ? "rb-suggest-" + spec.suggest : /within$/.test(spec.name) ? "rb-durations" : null;
          var input = el("input", { type: "text", value: pair[1] === null || pair[1] === undefined ? "" : String(pair[1]), list: listId, autocomplete: "off", spellcheck: "false",
            inputmode: spec.kind === "number" ? "numeric" : null, placeholder: spec.help || null,
            "data-k": "arg", "data-arg": i, "data-node": node._id, "data-key": key("arg-" + i) });
          var remove = el("button", { type: "button", class: "secondary small rb-x", "data-act": "remove-arg", "data-arg": i, "data-node": node._id, "data-key": key("remove-arg-" + i),
            "aria-label": "Remove the " + spec.label.toLowerCase() + " condition", title: "Remove", text: "×" });
          parts.push(field(spec.label, input, [remove], "rb-arg"));
        });
        var present = node.args.map(function (p) { return String(p[0]).toLowerCase(); });
        var addable = vocabulary.arguments.filter(function (a) { return present.indexOf(a.name) === -1; });
        if (addable.length) {
          parts.push(field("Add a condition", select({ "data-k": "add-arg", "data-node": node._id, "data-key": key("add-arg") },
            [["", "choose…"]].concat(addable.map(function (a) { return [a.name, a.label]; })), ""), null, "narrow-wide"));
        }
      }
      parts.push(el("button", { type: "button", class: "danger small rb-remove", "data-act": "remove", "data-node": slot._id, "data-key": slot._id + ":remove",
        "aria-label": "Remove rule " + number, text: "Remove" }));
      return el("div", { class: "rule rb-rule" + (negated ? " rb-negated" : ""), role: "group", "aria-label": "Rule " + number }, parts);
    }

    function renderLists() {
      lists.innerHTML = "";
      Object.keys(families).forEach(function (f) {
        var dl = el("datalist", { id: "rb-values-" + f });
        families[f].forEach(function (t) { dl.appendChild(el("option", { value: t.value, label: t.label + " · reach " + t.reach })); });
        lists.appendChild(dl);
      });
      var durations = el("datalist", { id: "rb-durations" });
      [["24h", "a day"], ["7d", "a week"], ["30d", "30 days"], ["90d", "90 days"], ["52w", "a year"]].forEach(function (d) {
        durations.appendChild(el("option", { value: d[0], label: d[1] }));
      });
      lists.appendChild(durations);
      lists.appendChild(el("datalist", { id: "rb-suggest-category" }));
      lists.appendChild(el("datalist", { id: "rb-suggest-brand" }));
      var own = el("datalist", { id: "rb-suggest-merchant" });
      own.appendChild(el("option", { value: vocabulary.merchant, label: "your store" }));
      lists.appendChild(own);
    }

    function render() {
      var active = document.activeElement;
      var focusKey = active && treeBox.contains(active) ? active.getAttribute("data-key") : null;
      treeBox.innerHTML = "";
      treeBox.appendChild(renderSlot(tree, "", true));
      if (focusKey) focusOn(focusKey);
    }

    function focusOn(key) {
      var target = treeBox.querySelector('[data-key="' + key + '"]');
      if (target) target.focus();
    }

    /* ---- editing */
    function suggestArgValues(input, spec) {
      if (!spec || !valuesUrl || (spec.suggest !== "category" && spec.suggest !== "brand")) return;
      fetchValues(spec.suggest, input.value).then(function (values) {
        var dl = document.getElementById("rb-suggest-" + spec.suggest);
        if (!dl) return;
        dl.innerHTML = "";
        values.forEach(function (v) { dl.appendChild(el("option", { value: v })); });
      });
    }

    treeBox.addEventListener("input", function (e) {
      var t = e.target;
      var place = locate(Number(t.getAttribute("data-node")));
      if (!place) return;
      var k = t.getAttribute("data-k");
      if (k === "value") {
        place.node.value = t.value;
        var tag = tagOf(place.node.family, t.value);
        var hint = document.getElementById("rb-hint-" + place.node._id);
        var invalid = !tag && t.value !== "" && !!families[place.node.family];
        if (hint) {
          hint.textContent = tag ? tag.label + " · reach " + tag.reach : invalid ? "Not a value of " + place.node.family.replace(/_/g, " ") + ": choose one from the list." : "";
          hint.classList.toggle("rb-warn", invalid);
        }
        if (invalid) t.setAttribute("aria-invalid", "true"); else t.removeAttribute("aria-invalid");
        changed({ render: false, record: false });
      } else if (k === "arg") {
        var pair = place.node.args[Number(t.getAttribute("data-arg"))];
        var spec = argSpecs[String(pair[0]).toLowerCase()];
        var wasNumber = typeof pair[1] === "number";
        pair[1] = wasNumber && /^-?[0-9]+(\.[0-9]+)?$/.test(t.value.trim()) ? Number(t.value.trim()) : t.value;
        suggestArgValues(t, spec);
        changed({ render: false, record: false });
      }
    });

    treeBox.addEventListener("change", function (e) {
      var t = e.target;
      var k = t.getAttribute("data-k");
      var place = locate(Number(t.getAttribute("data-node")));
      if (!place) return;
      var node = place.node;
      if (k === "value" || k === "arg") { if (dirty) record(); updateUndo(); return; }
      if (k === "neg") {
        if (node.t === "not") replace(place, node.item);
        else replace(place, { _id: L.newId(), t: "not", item: node });
        // keep the focus on this select: it now belongs to the new slot
        changed({ render: false });
        render();
        var slotId = node.t === "not" ? node.item._id : locate(node._id).parent._id;
        focusOn(slotId + ":neg");
        return;
      } else if (k === "op") {
        node.t = t.value;
      } else if (k === "kind") {
        // Changing the kind keeps the rule: its other fields stay on it, so changing back restores them.
        node.t = t.value;
        if (node.t === "tag" && !node.family) { var fresh = newRule(); node.family = fresh.family; node.value = fresh.value; }
        if (node.t === "action" && !node.args.length && !node.actionTouched) { node.args = [["within", "30d"]]; node.actionTouched = true; }
        if (node.t === "segment" && !node.id && vocabulary.segments.length) node.id = String(vocabulary.segments[0].id);
      } else if (k === "family") {
        // Changing the family keeps the rule and its value: the same value in the new family (any case) is taken;
        // otherwise the value stays and is marked, and the estimate says the tag is unknown, until one is chosen.
        node.family = t.value;
        if (node.value && !tagOf(node.family, node.value)) {
          (families[node.family] || []).forEach(function (tg) { if (tg.value.toLowerCase() === node.value.toLowerCase()) node.value = tg.value; });
        }
        if (!node.value && (families[node.family] || []).length) node.value = families[node.family][0].value;
      } else if (k === "segment") {
        node.id = t.value;
      } else if (k === "action") {
        node.action = t.value;
      } else if (k === "add-arg") {
        if (!t.value) return;
        var spec = argSpecs[t.value];
        node.args.push([t.value, spec && spec.default !== null && spec.default !== undefined ? spec.default + 1 : /within$/.test(t.value) ? "30d" : ""]);
        changed();
        focusOn(node._id + ":arg-" + (node.args.length - 1));
        return;
      }
      changed();
    });

    treeBox.addEventListener("click", function (e) {
      var t = e.target.closest("button[data-act]");
      if (!t) return;
      var act = t.getAttribute("data-act");
      var id = Number(t.getAttribute("data-node"));
      var place = locate(id);
      if (!place) return;
      if (act === "add-rule") {
        var rule = newRule();
        place.node.items.push(rule);
        changed();
        focusOn(rule._id + ":kind");
        say("Rule added.");
      } else if (act === "add-group") {
        var inner = newRule();
        place.node.items.push(L.group(place.node.t === "and" ? "or" : "and", [inner]));
        changed();
        focusOn(inner._id + ":kind");
        say("Group added.");
      } else if (act === "remove") {
        var container = place.parent && place.parent.t === "not" ? locate(place.parent._id).parent : place.parent;
        removeSlot(id);
        changed();
        focusOn(container._id + ":add-rule");
        say("Removed. Undo brings it back.");
      } else if (act === "remove-arg") {
        place.node.args.splice(Number(t.getAttribute("data-arg")), 1);
        changed();
        focusOn(place.node._id + ":kind");
      } else if (act === "unwrap") {
        replace(place, place.node.item);
        changed();
      }
    });

    /* ---- undo and redo: buttons, and Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y anywhere in the editor or the builder */
    undoButton.addEventListener("click", undo);
    redoButton.addEventListener("click", redo);
    (editor.closest("fieldset") || root).addEventListener("keydown", function (e) {
      if (!(e.ctrlKey || e.metaKey) || e.altKey) return;
      var key = e.key.toLowerCase();
      if (key === "z" && !e.shiftKey) { e.preventDefault(); undo(); }
      else if ((key === "z" && e.shiftKey) || key === "y") { e.preventDefault(); redo(); }
    });

    root.hidden = false;
    renderLists();
    render();
    if (editor.value.trim()) parseText();
    else { lastText = editor.value; record(); }

    return {
      refreshOptions: function () { renderLists(); render(); },
      textChanged: textChanged,
    };
  })();

  loadTags();
  if (editor.value.trim()) runEstimate();
})();
