// Live preview for the request form: whenever a field changes, ask the server for the same page it would
// render for "Preview" and swap in the policy panel (and the account-dependent choices). Without JavaScript
// the Preview button does exactly the same with a full page load.
(function () {
  "use strict";
  var form = document.getElementById("request-form");
  var panel = document.getElementById("preview-panel");
  if (!form || !panel || !window.fetch) { return; }
  var timer = null;
  var dependent = ["id_pipelines", "id_pass_role"];

  function refresh(changed) {
    var data = new FormData(form);
    data.set("intent", "preview");
    fetch(form.action, { method: "POST", body: data, credentials: "same-origin", headers: { "X-Live-Preview": "1" } })
      .then(function (response) { return response.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("preview-panel");
        if (fresh) { panel.innerHTML = fresh.innerHTML; }
        if (changed === "account") {
          dependent.forEach(function (id) {
            var mine = document.getElementById(id);
            var theirs = doc.getElementById(id);
            if (mine && theirs) { mine.innerHTML = theirs.innerHTML; }
          });
        }
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

  form.addEventListener("change", function (event) {
    var name = event.target && event.target.name;
    if (name === "kind") { showSections(); }
    clearTimeout(timer);
    timer = setTimeout(function () { refresh(name); }, 250);
  });
})();
