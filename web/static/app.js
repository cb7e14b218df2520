// Flotilla dashboard: live updates over server-sent events, and error
// flashes for HTMX requests. No inline scripts: the CSP is script-src 'self'.
(function () {
  "use strict";
  var source = null;
  var watching = "";

  // Every element with data-live="<fragment>:<name>" is kept current: the
  // server sends a new version of the fragment, with the same id, whenever
  // the object changes.
  function watchList() {
    var keys = [];
    document.querySelectorAll("[data-live]").forEach(function (el) {
      keys.push(el.getAttribute("data-live"));
    });
    keys.sort();
    return keys;
  }

  function connect() {
    var keys = watchList();
    var key = keys.join("\n");
    if (key === watching && source) {
      return;
    }
    if (source) {
      source.close();
      source = null;
    }
    watching = key;
    document.body.dataset.liveState = "off";
    if (keys.length === 0) {
      return;
    }
    var q = new URLSearchParams();
    keys.forEach(function (k) { q.append("watch", k); });
    source = new EventSource("/events?" + q.toString());
    source.onopen = function () { document.body.dataset.liveState = "connected"; };
    source.onerror = function () { document.body.dataset.liveState = "reconnecting"; };
    source.addEventListener("swap", function (ev) {
      var t = document.createElement("template");
      t.innerHTML = ev.data.trim();
      var el = t.content.firstElementChild;
      if (!el || !el.id) {
        return;
      }
      var old = document.getElementById(el.id);
      if (!old) {
        return;
      }
      old.replaceWith(el);
      if (window.htmx) {
        window.htmx.process(el);
      }
      el.classList.add("updated");
      var n = parseInt(document.body.dataset.liveUpdates || "0", 10) + 1;
      document.body.dataset.liveUpdates = String(n);
    });
  }

  function flash(html) {
    var f = document.getElementById("flash");
    if (f) {
      f.innerHTML = html;
    }
  }

  document.addEventListener("DOMContentLoaded", connect);
  document.addEventListener("htmx:afterSettle", connect);
  // data-pending counts HTMX requests in flight (tests wait for zero).
  function pending(delta) {
    var n = parseInt(document.body.dataset.pending || "0", 10) + delta;
    document.body.dataset.pending = String(Math.max(0, n));
  }
  document.addEventListener("htmx:beforeRequest", function () { flash(""); pending(1); });
  document.addEventListener("htmx:afterRequest", function () { pending(-1); });
  document.addEventListener("htmx:responseError", function (ev) {
    flash(ev.detail.xhr.responseText);
  });
  document.addEventListener("htmx:sendError", function () {
    flash('<div class="flash error"><strong>Network error</strong> the dashboard did not answer.</div>');
  });
  window.addEventListener("beforeunload", function () {
    if (source) {
      source.close();
    }
  });
})();
