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

// Deleting: confirmations take focus, Cancel clears them, and tags can be selected in ranges.
(function () {
  "use strict";

  document.addEventListener("htmx:afterSettle", function (event) {
    var box = event.target.querySelector && event.target.querySelector("[data-autofocus]");
    if (box) box.focus();
  });

  // Whatever opened the confirmation gets focus back when it is dismissed (else focus falls to <body>).
  var opener = null;
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.target && event.detail.target.id === "confirm-slot") opener = document.activeElement;
  });

  document.addEventListener("click", function (event) {
    var dismiss = event.target.closest("[data-dismiss]");
    var slot = document.getElementById("confirm-slot");
    if (dismiss && slot && slot.contains(dismiss)) {
      event.preventDefault();
      slot.innerHTML = "";
      if (opener && opener !== document.body && document.contains(opener)) opener.focus();
      opener = null;
    }
  });

  function boxes() {
    return Array.prototype.slice.call(document.querySelectorAll('input[type=checkbox][form="bulk-form"]'));
  }

  function updateCount() {
    var count = document.querySelector("[data-bulk-count]");
    if (!count) return;
    var n = boxes().filter(function (b) { return b.checked; }).length;
    var submit = document.querySelector("[data-bulk-submit]");
    // Disabled until something is ticked; a registry refusal (data-refused) keeps it disabled.
    if (submit && !submit.hasAttribute("data-refused")) submit.disabled = n === 0;
    count.textContent = n ? n + " selected" : "Select tags with the boxes; Shift-click selects a range.";
    var all = document.querySelector("[data-select-all]");
    if (all) {
      var total = boxes().length;
      all.checked = n > 0 && n === total;
      all.indeterminate = n > 0 && n < total;
    }
  }

  var last = null;
  document.addEventListener("click", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || box.type !== "checkbox") return;
    if (box.hasAttribute("data-select-all")) {
      boxes().forEach(function (b) { b.checked = box.checked; });
    } else if (box.getAttribute("form") === "bulk-form") {
      var list = boxes();
      if (event.shiftKey && last && list.indexOf(last) >= 0) {
        var a = list.indexOf(last), b = list.indexOf(box);
        list.slice(Math.min(a, b), Math.max(a, b) + 1).forEach(function (x) { x.checked = box.checked; });
      }
      last = box;
    } else {
      return;
    }
    updateCount();
  });
  document.addEventListener("htmx:afterSettle", function () { last = null; updateCount(); });
})();

// After a change swaps the table, the element that had focus is gone: the message takes it.
document.addEventListener("htmx:oobAfterSwap", function (event) {
  "use strict";
  var target = event.detail && event.detail.target;
  if (!target || target.id !== "messages") return;
  var active = document.activeElement;
  if (active && active !== document.body && document.contains(active)) return;
  var first = target.querySelector(".message");
  if (first) first.focus();
});

// Health panels poll only while the tab is visible, and refresh at once when it shows again.
document.addEventListener("htmx:beforeRequest", function (event) {
  "use strict";
  var el = event.detail && event.detail.elt;
  if (document.hidden && el && el.hasAttribute && el.hasAttribute("data-pause-hidden")) event.preventDefault();
});
document.addEventListener("visibilitychange", function () {
  "use strict";
  if (!document.hidden && window.htmx) window.htmx.trigger(document.body, "health-refresh");
});

// The top bar's menu (a <details>, so it works without this): Escape closes it and gives focus
// back to its button, a click elsewhere closes it.
(function () {
  "use strict";
  function openMenu() { return document.querySelector("details.menu[open]"); }
  document.addEventListener("keydown", function (event) {
    var menu = openMenu();
    if (event.key !== "Escape" || !menu) return;
    menu.open = false;
    var summary = menu.querySelector("summary");
    if (summary) summary.focus();
  });
  document.addEventListener("click", function (event) {
    var menu = openMenu();
    if (menu && !menu.contains(event.target)) menu.open = false;
  });
})();
