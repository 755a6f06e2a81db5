/* The segment language in the browser: the visual builder's tree, read from and written to the language's JSON
   form, and the canonical text rendered exactly as segments/language.py's to_text does (a property test runs these
   functions in Chromium against the server's parser and renderer on generated expressions).

   The builder's tree (what the rule builder edits):
     {t: "and" | "or", items: [node, ...]}           a group (may hold one rule, or none, while being built)
     {t: "not", item: node}
     {t: "tag", family, value}
     {t: "segment", id}                               id as text while being edited
     {t: "action", action, args: [[name, value], ...]}  value a number or text, arguments in any order
   A rule keeps the fields of the kinds it is not (a tag turned into a behaviour and back keeps its family and
   value). Arguments the vocabulary does not know are kept and rendered after the known ones. */
(function (global) {
  "use strict";

  // Python's str.isspace(), which the server's tokenizer and its bare-value pattern use (JavaScript's \s differs).
  var BARE_VALUE = /^[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000():,="']+$/;
  var KEYWORDS = ["and", "or", "not"];
  var nextId = 1;

  function escapeValue(value) {
    return String(value).replace(/\\/g, "\\\\").replace(/"/g, '\\"');
  }

  function quoteValue(value) {
    value = String(value);
    if (BARE_VALUE.test(value) && KEYWORDS.indexOf(value.toLowerCase()) === -1) return value;
    return '"' + escapeValue(value) + '"';
  }

  function argumentOrder(vocabulary) {
    var order = {};
    ((vocabulary && vocabulary.arguments) || []).forEach(function (arg, i) { order[arg.name] = { index: i, spec: arg }; });
    return order;
  }

  /* ------------------------------------------------------------ JSON form -> tree */
  function fromJson(json) {
    if (!json || typeof json !== "object") return group("and", []);
    if (Array.isArray(json.and)) return group("and", json.and.map(fromJson));
    if (Array.isArray(json.or)) return group("or", json.or.map(fromJson));
    if (Object.prototype.hasOwnProperty.call(json, "not")) return { _id: nextId++, t: "not", item: fromJson(json.not) };
    if (json.tag) return atom({ t: "tag", family: json.tag.family, value: json.tag.value });
    if (Object.prototype.hasOwnProperty.call(json, "segment")) return atom({ t: "segment", id: String(json.segment) });
    if (json.action) {
      var args = [];
      Object.keys(json).forEach(function (key) {
        if (key !== "action" && json[key] !== null && json[key] !== undefined) args.push([key, json[key]]);
      });
      return atom({ t: "action", action: json.action, args: args });
    }
    // An atom the builder has no controls for (likely_to_buy, or one added to the language later) is kept
    // whole, shown read-only and written back as it was: never dropped.
    if (Object.keys(json).length) return atom({ t: "kept", json: json });
    return group("and", []);
  }

  function group(op, items) {
    return { _id: nextId++, t: op, items: items };
  }

  function atom(fields) {
    var node = { _id: nextId++, t: fields.t, family: "", value: "", id: "", action: "purchased", args: [] };
    Object.keys(fields).forEach(function (k) { node[k] = fields[k]; });
    return node;
  }

  /* ------------------------------------------------------------ tree -> JSON form (as the server's from_json reads
     it: nested groups of one kind flattened, a group of one is that one, empty groups left out) */
  function isEmptyValue(value) {
    return value === null || value === undefined || (typeof value === "string" && value.trim() === "");
  }

  function actionJson(node, vocabulary) {
    var order = argumentOrder(vocabulary);
    var data = { action: String(node.action).toLowerCase() };
    var known = [];
    var unknown = [];
    // min_count's default is 1 only without max_count (with it, 0): min_count=1 beside max_count is kept.
    var hasMax = node.args.some(function (pair) {
      return String(pair[0]).toLowerCase() === "max_count" && !isEmptyValue(pair[1]);
    });
    node.args.forEach(function (pair) {
      var name = String(pair[0]).toLowerCase();
      var value = pair[1];
      if (isEmptyValue(value) || Object.prototype.hasOwnProperty.call(data, name)) return;
      var entry = order[name];
      var isDefault = entry && entry.spec.default !== null && entry.spec.default !== undefined && String(value) === String(entry.spec.default);
      if (isDefault && !(name === "min_count" && hasMax)) return;
      if (entry && entry.spec.kind === "number" && typeof value === "string" && /^-?[0-9]+$/.test(value.trim())) value = parseInt(value, 10);
      (entry ? known : unknown).push([name, value, entry ? entry.index : 0]);
    });
    known.sort(function (a, b) { return a[2] - b[2]; });
    known.concat(unknown).forEach(function (pair) { data[pair[0]] = pair[1]; });
    return data;
  }

  function toJson(node, vocabulary) {
    if (node.t === "and" || node.t === "or") {
      var flat = [];
      node.items.forEach(function (item) {
        var json = toJson(item, vocabulary);
        if (json === null) return;
        if (json[node.t]) flat = flat.concat(json[node.t]); else flat.push(json);
      });
      if (!flat.length) return null;
      if (flat.length === 1) return flat[0];
      var out = {};
      out[node.t] = flat;
      return out;
    }
    if (node.t === "not") {
      var inner = toJson(node.item, vocabulary);
      return inner === null ? null : { not: inner };
    }
    if (node.t === "tag") return { tag: { family: String(node.family).toLowerCase(), value: node.value } };
    if (node.t === "segment") return { segment: /^[0-9]+$/.test(node.id) ? parseInt(node.id, 10) : node.id };
    if (node.t === "kept") return node.json;
    return actionJson(node, vocabulary);
  }

  /* ------------------------------------------------------------ JSON form -> canonical text (language.to_text) */
  function jsonText(json, vocabulary) {
    var text = function (n) { return jsonText(n, vocabulary); };
    if (json.or) return json.or.map(text).join(" OR ");
    if (json.and) return json.and.map(function (n) { return n.or ? "(" + text(n) + ")" : text(n); }).join(" AND ");
    if (Object.prototype.hasOwnProperty.call(json, "not")) {
      var inner = text(json.not);
      return json.not.and || json.not.or ? "NOT (" + inner + ")" : "NOT " + inner;
    }
    if (json.tag) return json.tag.family + ":" + quoteValue(json.tag.value);
    if (Object.prototype.hasOwnProperty.call(json, "segment")) return "segment:" + json.segment;
    if (json.likely_to_buy) { // language.py's _likely_to_text: product and category quoted, top and band not
      var likely = json.likely_to_buy;
      var parts = ["product", "category", "top", "band"].filter(function (k) {
        return likely[k] !== null && likely[k] !== undefined;
      }).map(function (k) {
        return k === "top" || k === "band" ? k + "=" + likely[k] : k + '="' + escapeValue(likely[k]) + '"';
      });
      return "likely_to_buy(" + parts.join(", ") + ")";
    }
    if (!json.action) return Object.keys(json)[0] + "(…)"; // the server's canonical text replaces it at once
    // Quoted as the vocabulary says the server quotes that argument; an argument it does not describe, by type.
    var order = argumentOrder(vocabulary);
    var args = [];
    Object.keys(json).forEach(function (name) {
      if (name === "action") return;
      var value = json[name];
      var quoted = order[name] ? order[name].spec.quoted !== false : typeof value !== "number";
      args.push(quoted ? name + '="' + escapeValue(value) + '"' : name + "=" + value);
    });
    return json.action + "(" + args.join(", ") + ")";
  }

  function toText(node, vocabulary) {
    var json = toJson(node, vocabulary);
    return json === null ? "" : jsonText(json, vocabulary);
  }

  /* ------------------------------------------------------------ helpers for the builder */
  function clone(node) {
    return JSON.parse(JSON.stringify(node));
  }

  function countRules(node) {
    if (node.t === "and" || node.t === "or") return node.items.reduce(function (n, i) { return n + countRules(i); }, 0);
    if (node.t === "not") return countRules(node.item);
    return 1;
  }

  global.SegmentLanguage = {
    fromJson: fromJson,
    toJson: toJson,
    toText: toText,
    jsonText: jsonText,
    quoteValue: quoteValue,
    group: group,
    atom: atom,
    clone: clone,
    countRules: countRules,
    newId: function () { return nextId++; },
  };
})(window);
