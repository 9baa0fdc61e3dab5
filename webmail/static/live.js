// Postroom webmail: new mail without reloading. Listens to /events (server-sent events) and, when the
// folder on screen or the folder list changed, fetches this page again and swaps in its list and folders.
(function () {
  "use strict";
  var main = document.querySelector("main.list");
  var nav = document.querySelector("nav.folders");
  if (!window.EventSource || !nav) { return; }
  var busy = false;
  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin" }).then(function (r) {
      if (!r.ok || r.redirected) { throw new Error("not refreshed"); }
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var newNav = doc.querySelector("nav.folders");
      if (newNav) { nav.replaceWith(newNav); nav = newNav; }
      var newMain = doc.querySelector("main.list");
      if (main && newMain && !main.contains(document.activeElement)) { main.replaceWith(newMain); main = newMain; }
    }).catch(function () {}).then(function () { busy = false; });
  }
  var source = new EventSource("/events");
  source.addEventListener("changed", refresh);
})();
