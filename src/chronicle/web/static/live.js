// Live updates: the server says when the log or the tables changed (server-sent events);
// the page then fetches its own URL's main content again and swaps it in place.
// Nothing else runs here: the pages work without this script.
(function () {
  "use strict";
  if (!window.EventSource) return;
  var badge = document.getElementById("live");
  var main = document.getElementById("main");
  var busy = false, again = false, last = 0;

  function refresh() {
    if (busy) { again = true; return; }
    var wait = Math.max(0, 1000 - (Date.now() - last));  // at most one refresh a second
    busy = true;
    setTimeout(function () {
      fetch(location.href, { headers: { "X-Chronicle-Partial": "1" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          // Keep folded/unfolded sections and focus where the reader left them: skip while a form is in use.
          if (html !== null && !main.contains(document.activeElement && document.activeElement.form ? document.activeElement : null)) {
            var open = Array.prototype.map.call(main.querySelectorAll("details[open]"), function (d, i) { return i; });
            main.innerHTML = html;
            var all = main.querySelectorAll("details");
            open.forEach(function (i) { if (all[i]) all[i].open = true; });
          }
        })
        .catch(function () {})
        .then(function () {
          busy = false; last = Date.now();
          if (again) { again = false; refresh(); }
        });
    }, wait);
  }

  var source = null;
  function connect() {
    source = new EventSource("/live");
    source.addEventListener("open", function () { badge.classList.add("on"); badge.title = "live: updates as events land"; });
    source.addEventListener("error", function () { badge.classList.remove("on"); badge.title = "reconnecting"; });
    source.addEventListener("change", function (e) {
      var data = JSON.parse(e.data);
      document.querySelectorAll("[data-live=head]").forEach(function (n) { n.textContent = data.head.toLocaleString("en-US"); });
      badge.dataset.head = data.head;
      refresh();
    });
  }
  // A page kept in the back/forward cache would keep its stream open, and a browser allows
  // only six connections to a host: close it when the page is hidden, reopen when it is shown.
  window.addEventListener("pagehide", function () { if (source) { source.close(); source = null; badge.classList.remove("on"); } });
  window.addEventListener("pageshow", function (e) { if (e.persisted || !source) { if (!source) connect(); refresh(); } });
  connect();
})();
