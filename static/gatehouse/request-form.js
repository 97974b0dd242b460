// The request form with JavaScript: choosing an account loads its lists at once (the Continue step without
// JavaScript), and whenever another field changes the policy panel is refreshed with the page the server would
// render for "Preview". Without JavaScript the Continue and Preview buttons do exactly the same.
(function () {
  "use strict";
  var form = document.getElementById("request-form");
  var panel = document.getElementById("preview-panel");
  if (!form || !panel || !window.fetch) { return; }
  var timer = null;

  function go(intent) {
    var field = document.createElement("input");
    field.type = "hidden";
    field.name = "intent";
    field.value = intent;
    form.appendChild(field);
    form.submit();
  }

  // The duration says what the preview says: left empty, its placeholder shows what the rule makes of it; more
  // than the rule allows is brought down to the rule's maximum, in the field as in the preview (unless the person
  // typed something else meanwhile).
  var duration = form.elements.namedItem("duration_hours");
  function syncDuration(doc, sent) {
    var fresh = doc.getElementById("id_duration_hours");
    if (!duration || !fresh) { return; }
    duration.placeholder = fresh.placeholder;
    if (duration.value === (sent || "") && fresh.value !== duration.value) {
      duration.value = fresh.value;
      // Brought down from permanent, where the rule allows no permanent access.
      var permanent = form.elements.namedItem("permanent");
      var freshPermanent = doc.getElementById("id_permanent");
      if (permanent && freshPermanent && !freshPermanent.checked) { permanent.checked = false; }
    }
  }

  function refresh() {
    var data = new FormData(form);
    data.set("intent", "preview");
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin", headers: { "X-Live-Preview": "1" } })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("preview-panel");
        if (fresh) { panel.innerHTML = fresh.innerHTML; panel.setAttribute("data-live", ""); }
        syncDuration(doc, data.get("duration_hours"));
      })
      .catch(function () { /* the Preview button still works */ });
  }

  // Show only the sections the chosen kind uses. A hidden section is also disabled, so what was typed there
  // before the kind changed is not sent. Without JavaScript every section shows and the server ignores the rest.
  var kind = form.elements.namedItem("kind");
  function showSections() {
    if (!kind) { return; }
    Array.prototype.forEach.call(form.querySelectorAll("fieldset[data-kinds]"), function (section) {
      var used = section.getAttribute("data-kinds").split(" ").indexOf(kind.value) !== -1;
      section.hidden = !used;
      section.disabled = !used;
    });
  }
  showSections();

  // A page that lists what stops the request starts there (on a phone it would be above the fold otherwise).
  var summary = document.getElementById("error-summary");
  if (summary) { summary.focus(); }

  // A count beside each text box with a limit: a long text is seen to be long before it is sent, and never cut.
  Array.prototype.forEach.call(form.querySelectorAll("textarea[data-limit]"), function (box) {
    var limit = parseInt(box.getAttribute("data-limit"), 10);
    var count = document.createElement("div");
    count.className = "form-text";
    count.setAttribute("data-testid", "count-" + box.name);
    box.insertAdjacentElement("afterend", count);
    function update() {
      var n = box.value.length;
      // Said once the text nears its limit; an empty or short box carries no count.
      count.textContent = n < limit * 0.8 ? "" : n.toLocaleString("en") + " of " + limit.toLocaleString("en") +
        " characters" + (n > limit ? ": " + (n - limit).toLocaleString("en") + " too many" : "");
      count.classList.toggle("text-danger", n > limit);
    }
    box.addEventListener("input", update);
    update();
  });

  form.addEventListener("change", function (event) {
    var name = event.target && event.target.name;
    if (name === "account") {
      // The picker fills in a 12-digit id; half-typed text waits for a choice (or the Continue button).
      if (/^\d{12}$/.test(event.target.value.trim())) { go("continue"); }
      return;
    }
    if (name === "kind") { showSections(); }
    if (name === "level" && event.target.value === "custom") {
      // The custom level lists its actions in the folded section: unfold it.
      var scope = form.querySelector("[data-testid=narrower-scope]");
      if (scope) { scope.open = true; }
    }
    if (form.getAttribute("data-step") === "one") { return; }
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
