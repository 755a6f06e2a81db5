/* The visual rule builder: a second view of a segment-language expression, kept in step with its text both ways.

   The builder edits a tree (segment-language.js); every change renders the canonical text into the editor; typing
   in the editor is parsed by the server (segments/parse/) into the tree. Text that does not parse never touches the
   tree and the tree never overwrites it; Undo steps back through both. Used by the segment editor (segment-editor.js) and by the journey builder (journey-builder.js) for every condition
   of a journey, so there is one builder, never a second grammar. segment-language.js is loaded first.

   RuleBuilder.mount({
     root,          the builder's box: [data-builder-tree], [data-builder-problem], [data-builder-status],
                    [data-builder-lists], [data-undo], [data-redo]
     editor,        the textarea holding the expression's text
     vocabulary,    portal.segment_builder.builder_vocabulary (its arguments may be a subset: action-only fields)
     parseUrl, csrf,
     families,      the tag catalogue by family (refreshOptions(families) when it arrives)
     fetchValues,   optional (argument, prefix) -> Promise of the values the merchant may name
     showError,     optional (error, text): the text's syntax error, drawn by the caller (null clears it)
     onChange,      optional: called whenever the text changed (the segment editor's estimate)
     actionOnly,    one action and nothing else (no groups, no NOT, no tags)
     idPrefix,      makes the ids of several builders on one page unique
     keyScope,      where Ctrl+Z undoes this builder (default: the editor's fieldset)
   }) -> { refreshOptions(families), textChanged() }; call textChanged() on every input in the editor. */
(function (global) {
  "use strict";

  /* ---------------------------------------------------------------- drawing helpers (also RuleBuilder.el/select) */
  // An element with attributes (null, undefined and false left out; true as an empty attribute; "text" is its
  // text, "value" its value) and children (elements, or strings as text).
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (attrs[k] === null || attrs[k] === undefined || attrs[k] === false) return;
      if (k === "text") node.textContent = attrs[k];
      else if (k === "value") node.value = attrs[k];
      else node.setAttribute(k, attrs[k] === true ? "" : attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  // A <select> of [value, label] options with `current` selected.
  function select(attrs, options, current) {
    var s = el("select", attrs);
    options.forEach(function (o) {
      var opt = el("option", { value: o[0], text: o[1] });
      if (String(o[0]) === String(current)) opt.selected = true;
      s.appendChild(opt);
    });
    return s;
  }

  function mount(options) {
    var root = options.root;
    var editor = options.editor;
    var L = global.SegmentLanguage;
    if (!root || !editor || !L || !options.vocabulary) return { refreshOptions: function () {}, textChanged: function () {} };
    var vocabulary = options.vocabulary;
    var parseUrl = options.parseUrl || root.getAttribute("data-parse-url");
    var csrf = options.csrf || "";
    var families = options.families || {};
    var showError = options.showError || function () {};
    var scheduleEstimate = options.onChange || function () {};
    var valuesUrl = !!options.fetchValues;
    var fetchValues = options.fetchValues || function () { return Promise.resolve([]); };
    // An action-only field (a journey's trigger, wait or exit event): one behaviour, no groups and no NOT.
    var actionOnly = !!options.actionOnly;
    var idPrefix = options.idPrefix || "rb";
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
      if (isRefusal(error)) {
        problemBox.textContent = error.message;
        problemBox.hidden = false;
        return;
      }
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
      if (actionOnly) return L.atom({ t: "action", action: vocabulary.actions.length ? vocabulary.actions[0].name : "purchased", args: [] });
      var family = firstFamily();
      var values = families[family] || [];
      return L.atom({ t: "tag", family: family, value: values.length ? values[0].value : "" });
    }

    function tagOf(family, value) {
      var values = families[family] || [];
      for (var i = 0; i < values.length; i++) if (values[i].value === value) return values[i];
      return null;
    }

    /* ---- drawing (el and select: the module's own, shared with the journey builder) */
    function field(label, control, extra, className) {
      var id = idPrefix + "-" + (++uid);
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
      var head = isRoot && actionOnly ? null : el("div", { class: "rb-group-head" }, [
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
        actionOnly && node.items.length ? null : el("button", { type: "button", class: "secondary small", "data-act": "add-rule", "data-node": node._id, "data-key": node._id + ":add-rule", text: actionOnly ? "Choose the event" : "Add a rule" }),
        actionOnly ? null : el("button", { type: "button", class: "secondary small", "data-act": "add-group", "data-node": node._id, "data-key": node._id + ":add-group", text: "Add a group" }),
        isRoot ? null : el("button", { type: "button", class: "danger small", "data-act": "remove", "data-node": slot._id, "data-key": slot._id + ":remove", "aria-label": "Remove group " + number, text: "Remove group" }),
      ]);
      return el("section", { class: "rb-group" + (negated ? " rb-negated" : "") + (isRoot ? " rb-root" : ""), role: "group", "aria-label": title }, [
        head,
        node.items.length ? list : el("p", { class: "small muted rb-empty", text: actionOnly ? "No event yet: choose one, or type it." : isRoot ? "No rules yet: add one, or type the expression above." : "This group is empty." }),
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
      // An action-only field shows a tag or a NOT only when its text has one (to be turned into a behaviour).
      var parts = [
        actionOnly && !negated ? null : negSelect(slot, negated, "rule"),
        actionOnly && node.t === "action" ? null : field("Kind", select({ "data-k": "kind", "data-node": node._id, "data-key": key("kind") },
          [["tag", "Tag"], ["action", "Behaviour"], ["segment", "Saved segment"]], node.t), null, "narrow"),
      ];
      if (node.t === "tag") {
        var names = Object.keys(families).sort();
        if (node.family && names.indexOf(node.family) === -1) names.unshift(node.family);
        parts.push(field("Family", select({ "data-k": "family", "data-node": node._id, "data-key": key("family") },
          names.map(function (f) { return [f, families[f] ? f.replace(/_/g, " ") : f + " (not in the catalogue)"]; }), node.family)));
        var tag = tagOf(node.family, node.value);
        var hintId = idPrefix + "-hint-" + node._id;
        var invalid = !tag && node.value !== "" && families[node.family];
        var hint = el("div", { class: "help rb-hint" + (invalid ? " rb-warn" : ""), id: hintId,
          text: tag ? tag.label + " · reach " + tag.reach : invalid ? "Not a value of " + node.family.replace(/_/g, " ") + ": choose one from the list." : "" });
        parts.push(field("Value", el("input", { type: "text", value: node.value, list: idPrefix + "-values-" + node.family, autocomplete: "off", spellcheck: "false",
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
          var listId = spec.suggest ? idPrefix + "-suggest-" + spec.suggest : /within$/.test(spec.name) ? idPrefix + "-durations" : null;
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
        var dl = el("datalist", { id: idPrefix + "-values-" + f });
        families[f].forEach(function (t) { dl.appendChild(el("option", { value: t.value, label: t.label + " · reach " + t.reach })); });
        lists.appendChild(dl);
      });
      var durations = el("datalist", { id: idPrefix + "-durations" });
      [["24h", "a day"], ["7d", "a week"], ["30d", "30 days"], ["90d", "90 days"], ["52w", "a year"]].forEach(function (d) {
        durations.appendChild(el("option", { value: d[0], label: d[1] }));
      });
      lists.appendChild(durations);
      lists.appendChild(el("datalist", { id: idPrefix + "-suggest-category" }));
      lists.appendChild(el("datalist", { id: idPrefix + "-suggest-brand" }));
      var own = el("datalist", { id: idPrefix + "-suggest-merchant" });
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
        var dl = document.getElementById(idPrefix + "-suggest-" + spec.suggest);
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
        var hint = document.getElementById(idPrefix + "-hint-" + place.node._id);
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
        if (node.t === "action" && !actionOnly && !node.args.length && !node.actionTouched) { node.args = [["within", "30d"]]; node.actionTouched = true; }
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
    (options.keyScope || editor.closest("fieldset") || root).addEventListener("keydown", function (e) {
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
      refreshOptions: function (catalogue) { if (catalogue) families = catalogue; renderLists(); render(); },
      textChanged: textChanged,
    };
  }

  /* A syntax error drawn under the text: the line, a caret under the column, and why. */
  /* The portal's refusals of a request itself (signed out, a stale page, no longer there, not allowed): they are
     about no place in the expression, so they are shown as they are, with no caret. */
  var REFUSALS = { signed_out: true, csrf_failed: true, not_found: true, forbidden: true };
  function isRefusal(error) { return !!(error && REFUSALS[error.code]); }

  function errorText(error, text) {
    if (isRefusal(error)) return error.message;
    var lines = String(text).split("\n");
    var lineNo = error.line || 1;
    var column = error.column || (typeof error.offset === "number" ? error.offset + 1 : 1);
    var line = lines[lineNo - 1] || "";
    var where = lineNo > 1 ? "line " + lineNo + ", column " + column : "column " + column;
    var message = /column \d+/.test(error.message) ? error.message : error.message + " (" + where + ")";
    return line + "\n" + " ".repeat(Math.max(0, column - 1)) + "^\n" + message;
  }

  /* The categories and brands the merchant may name in actions (segments/values.json), cached per prefix. */
  function valueFetcher(valuesUrl) {
    var cache = {};
    return function (argument, prefix) {
      var key = argument + "\u0000" + prefix;
      if (cache[key]) return Promise.resolve(cache[key]);
      var url = valuesUrl + "?argument=" + encodeURIComponent(argument) + "&prefix=" + encodeURIComponent(prefix);
      return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { values: [] }; })
        .then(function (data) { cache[key] = data.values || []; return cache[key]; })
        .catch(function () { return []; });
    };
  }

  global.RuleBuilder = {
    mount: mount, errorText: errorText, isRefusal: isRefusal, valueFetcher: valueFetcher, el: el, select: select,
  };
})(window);
