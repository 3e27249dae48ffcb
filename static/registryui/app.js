// Copy buttons: one delegated listener, so rows swapped in by htmx work too.
(function () {
  "use strict";

  function fallbackCopy(text) {
    // navigator.clipboard exists only in secure contexts; a dashboard on http://host:8000 is not one.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallbackCopy(text); });
    }
    return fallbackCopy(text);
  }

  function flash(button, label, cls) {
    var original = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", original);
    button.textContent = label;
    button.classList.add(cls);
    window.setTimeout(function () {
      button.textContent = original;
      button.classList.remove(cls);
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.copy");
    if (!button) return;
    var text = button.getAttribute("data-copy");
    var from = button.getAttribute("data-copy-from");
    if (from) {
      var source = document.querySelector(from);
      text = source ? source.textContent : "";
    }
    if (!text) return;
    copy(text).then(function () { flash(button, "Copied", "ok"); },
                    function () { flash(button, "Press Ctrl+C", "fail"); });
  });

  // "/" focuses the filter, as on most package sites.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target.tagName || "").toLowerCase();
    if (tag === "input" || tag === "textarea" || event.target.isContentEditable) return;
    var filter = document.getElementById("q");
    if (filter) { event.preventDefault(); filter.focus(); filter.select(); }
  });
})();
