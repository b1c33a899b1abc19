// Filters for the web page: by model, challenge and outcome. Progressive enhancement: without this script every
// part of the report is shown and readable; with it, the filter bar appears and hides what does not match.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var selects = document.querySelectorAll("select[data-filter]");
  function apply() {
    var wanted = {};
    selects.forEach(function (s) { wanted[s.getAttribute("data-filter")] = s.value; });
    document.querySelectorAll("[data-target], [data-challenge], [data-outcome]").forEach(function (el) {
      if (el.tagName === "OPTION") { return; }
      var hide = false;
      ["target", "challenge", "outcome"].forEach(function (key) {
        var value = el.getAttribute("data-" + key);
        if (wanted[key] && value !== null && value !== wanted[key]) { hide = true; }
      });
      el.hidden = hide;
    });
  }
  selects.forEach(function (s) { s.addEventListener("change", apply); });
})();
