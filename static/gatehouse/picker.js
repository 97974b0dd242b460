// Pickers: a text input with data-picker="account|ou|pipeline" becomes a combobox (the WAI-ARIA combobox
// pattern with a listbox popup) that asks /catalog/search/ for a page of matches as you type. Arrow keys move
// through the options, Enter chooses, Escape closes; data-multiple appends the choice to a list of ids instead
// of replacing the value; data-submit submits the field's form once chosen. Without JavaScript the input takes
// a 12-digit id (or a unit id) as typed, and the "Find ..." link beside it opens the plain search page.
(function () {
  "use strict";
  if (!window.fetch) { return; }
  var count = 0;

  function setup(input) {
    var kind = input.getAttribute("data-picker");
    var scope = input.getAttribute("data-scope") || "request";
    var multiple = input.hasAttribute("data-multiple");
    var id = "picker-" + (++count);
    var wrap = document.createElement("div");
    wrap.className = "gh-picker position-relative";
    input.parentNode.insertBefore(wrap, input);
    wrap.appendChild(input);
    var list = document.createElement("ul");
    list.id = id + "-list";
    list.className = "gh-picker-list list-group position-absolute w-100 shadow-sm";
    list.setAttribute("role", "listbox");
    list.hidden = true;
    wrap.appendChild(list);
    var status = document.createElement("div");
    status.className = "visually-hidden";
    status.setAttribute("aria-live", "polite");
    wrap.appendChild(status);
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", list.id);
    var items = [];
    var active = -1;
    var timer = null;
    var asked = 0;

    function term() {
      if (!multiple) { return input.value; }
      var parts = input.value.split(/[\s,]+/);
      return parts[parts.length - 1];
    }

    function close() {
      list.hidden = true;
      input.setAttribute("aria-expanded", "false");
      input.removeAttribute("aria-activedescendant");
      active = -1;
    }

    function mark(index) {
      active = index;
      Array.prototype.forEach.call(list.children, function (li, i) {
        var on = i === index;
        li.classList.toggle("active", on);
        li.setAttribute("aria-selected", on ? "true" : "false");
        if (on) { input.setAttribute("aria-activedescendant", li.id); li.scrollIntoView({ block: "nearest" }); }
      });
    }

    function choose(index) {
      var item = items[index];
      if (!item) { return; }
      var value = kind === "pipeline" ? item.label : item.value;
      if (multiple) {
        var parts = input.value.split(/[\s,]+/).filter(Boolean);
        parts.pop();
        if (parts.indexOf(value) === -1) { parts.push(value); }
        input.value = parts.join(" ") + " ";
      } else {
        input.value = value;
      }
      close();
      status.textContent = item.label + " chosen";
      input.dispatchEvent(new Event("change", { bubbles: true }));
      if (input.hasAttribute("data-submit") && input.form) { input.form.submit(); }
    }

    function show(answer, searched) {
      // A newer answer keeps the option the keyboard is on, if it is still there.
      var keep = active >= 0 && items[active] ? items[active].value : null;
      items = answer.results || [];
      list.innerHTML = "";
      items.forEach(function (item, i) {
        var li = document.createElement("li");
        li.id = id + "-opt-" + i;
        li.className = "list-group-item list-group-item-action py-1";
        li.setAttribute("role", "option");
        li.setAttribute("aria-selected", "false");
        var label = document.createElement("div");
        label.textContent = item.label;
        li.appendChild(label);
        if (item.detail) {
          var detail = document.createElement("div");
          detail.className = "small text-muted";
          detail.textContent = item.detail;
          li.appendChild(detail);
        }
        li.addEventListener("mousedown", function (event) { event.preventDefault(); choose(i); });
        list.appendChild(li);
      });
      if (!items.length) {
        var none = document.createElement("li");
        none.className = "list-group-item small text-muted";
        none.textContent = answer.error || "Nothing matches.";
        list.appendChild(none);
      }
      list.hidden = false;
      input.setAttribute("aria-expanded", "true");
      status.textContent = items.length + (answer.next ? "+" : "") + " results";
      input.setAttribute("data-searched", searched);
      active = -1;
      items.forEach(function (item, i) { if (item.value === keep) { mark(i); } });
    }

    function search() {
      var mine = ++asked;
      var searched = term().trim();
      var params = new URLSearchParams({ kind: kind, scope: scope, q: searched, format: "json" });
      if (input.getAttribute("data-account")) { params.set("account", input.getAttribute("data-account")); }
      fetch("/catalog/search/?" + params.toString(), { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) { return response.json(); })
        .then(function (answer) { if (mine === asked && document.activeElement === input) { show(answer, searched); } })
        .catch(function () { close(); });
    }

    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(search, 150); });
    input.addEventListener("focus", function () { if (!input.value || multiple) { search(); } });
    input.addEventListener("blur", function () { setTimeout(close, 100); });
    input.addEventListener("keydown", function (event) {
      if (event.key === "ArrowDown") {
        event.preventDefault();
        if (list.hidden) { search(); return; }
        mark(Math.min(active + 1, items.length - 1));
      } else if (event.key === "ArrowUp") {
        event.preventDefault();
        mark(Math.max(active - 1, 0));
      } else if (event.key === "Enter" && !list.hidden && active >= 0) {
        event.preventDefault();
        choose(active);
      } else if (event.key === "Escape") {
        close();
      }
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("input[data-picker]"), setup);
})();
