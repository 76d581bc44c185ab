// ebb dashboard: the only script. Pages are complete without it; it keeps the
// live part of a page (#live) fresh from the server's Server-Sent Events and
// wires the "select all" box of the dead-letter list. It never builds HTML
// from data: fragments arrive rendered and escaped by the server.
"use strict";
(function () {
  const main = document.querySelector("main[data-live]");
  const target = document.getElementById("live");
  const conn = document.getElementById("conn");
  if (main && target && window.EventSource) {
    const es = new EventSource(main.dataset.live);
    es.addEventListener("live", function (ev) {
      // Keep what the user is typing or has ticked: skip the swap while a
      // form control inside the fragment has focus.
      const active = document.activeElement;
      if (active && target.contains(active) && active.matches("input, select, textarea")) return;
      target.innerHTML = ev.data;
      document.body.dataset.liveUpdates = String(Number(document.body.dataset.liveUpdates || 0) + 1);
    });
    es.addEventListener("open", function () { if (conn) conn.classList.remove("down"); });
    es.addEventListener("error", function () { if (conn) conn.classList.add("down"); });
  }
  document.addEventListener("change", function (ev) {
    const box = ev.target;
    if (!box.matches || !box.matches("input[data-select-all]")) return;
    const form = box.closest("form");
    if (!form) return;
    form.querySelectorAll('input[type=checkbox][name="' + box.dataset.selectAll + '"]').forEach(function (c) { c.checked = box.checked; });
  });
})();
