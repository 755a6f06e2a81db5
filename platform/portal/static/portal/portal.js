/* Small progressive enhancements shared by every portal page. Pages work without it. */
(function () {
  "use strict";
  // Loaded by the base template on every page; a page that also names it in its own scripts runs it once.
  if (window.dmpPortalLoaded) return;
  window.dmpPortalLoaded = true;

  // Copy-to-clipboard buttons: <button data-copy-target="element-id">.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy-target]");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.textContent.trim();
    var done = function () {
      var previous = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = previous; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done);
    } else {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      try { document.execCommand("copy"); done(); } catch (e) { /* the key stays selected for a manual copy */ }
    }
  });

  // Forms that ask before doing something that cannot be undone: <form data-confirm="...">.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  // Expression errors (<pre class="expr-error">: the line, a caret "^" under the column, why) keep the caret
  // under its column and scroll sideways inside their box; this scrolls the box so the caret is in view, for
  // the server's error on load and for the editor's live one whenever it changes.
  function caretIntoView(box) {
    if (box.hidden || box.scrollWidth <= box.clientWidth) return;
    var lines = box.textContent.split("\n");
    var column = lines.length > 1 ? lines[1].indexOf("^") : -1;
    if (column < 0) return;
    // Measured beside the box, not in it: a change inside would wake the observer below again.
    var probe = document.createElement("span");
    var style = window.getComputedStyle(box);
    probe.textContent = "0000000000";
    probe.style.cssText = "position:absolute;visibility:hidden;white-space:pre;font-family:" + style.fontFamily +
      ";font-size:" + style.fontSize;
    document.body.appendChild(probe);
    var charWidth = probe.getBoundingClientRect().width / 10;
    document.body.removeChild(probe);
    box.scrollLeft = Math.max(0, column * charWidth - box.clientWidth / 2);
  }
  function watch(box) {
    caretIntoView(box);
    new MutationObserver(function () { caretIntoView(box); }).observe(box, {
      childList: true, characterData: true, subtree: true, attributes: true, attributeFilter: ["hidden"]
    });
  }
  function watchAll() { document.querySelectorAll(".expr-error").forEach(watch); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", watchAll);
  else watchAll();
})();
