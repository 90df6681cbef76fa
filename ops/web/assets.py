"""The dashboard's stylesheet and script, as constants (no package data, no CDN, offline).

The script is the only one the pages load: it listens to `/events` (SSE) and, when a view
the page shows changed, fetches the page's fragment again (same URL, header
`X-Prodmon-Fragment: 1`) and swaps it in; it never builds HTML itself. Without it, the
pages still work (reload to refresh).
"""

from __future__ import annotations

CSS = """
:root { --fg:#1d2330; --muted:#667; --line:#e2e4e8; --bg:#f6f7f9; --card:#fff; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color:var(--fg); background:var(--bg); }
header { display:flex; align-items:center; gap:1.5em; padding:.6em 1.5em; background:#1d2330;
         color:#fff; }
header a { color:#dfe6f3; text-decoration:none; font-weight:600; }
header a:hover { color:#fff; }
header .brand { font-weight:700; color:#fff; }
.live { margin-left:auto; font-size:12px; padding:.1em .6em; border-radius:1em; }
.live.on { background:#1e8449; } .live.off { background:#a04000; } .live.idle { background:#555; }
main { padding:1em 1.5em 3em; max-width:1300px; }
h1 { font-size:20px; margin:.3em 0 .6em; } h2 { font-size:16px; margin:1.4em 0 .5em; }
table { border-collapse:collapse; width:100%; background:var(--card); }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line);
         vertical-align:top; }
th { font-size:12px; color:var(--muted); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.kpis { display:flex; gap:1em; flex-wrap:wrap; }
.kpi { background:var(--card); border:1px solid var(--line); border-radius:6px;
       padding:.6em 1em; min-width:150px; }
.kpi b { display:block; font-size:22px; }
.badge { display:inline-block; padding:0 .5em; border-radius:.8em; font-size:12px;
         font-weight:600; background:#ddd; }
.st-healthy, .st-resolved, .st-delivered { background:#d4efdf; color:#145a32; }
.st-warning, .st-acknowledged, .st-new, .st-regressed { background:#fcf3cf; color:#7d6608; }
.st-critical, .st-firing, .st-failed, .st-gave_up { background:#fadbd8; color:#922b21; }
.st-active { background:#fdebd0; color:#873600; }
.sev-critical { color:#922b21; font-weight:700; } .sev-high { color:#b9770e; font-weight:700; }
.muted { color:var(--muted); } .small { font-size:12px; }
.chart { background:var(--card); border:1px solid var(--line); border-radius:6px;
         margin:.3em 0; max-width:100%; height:auto; }
pre { background:#1d2330; color:#e8ecf3; padding:1em; border-radius:6px; overflow:auto;
      white-space:pre-wrap; word-break:break-word; }
form.inline { display:inline; margin:0 .2em 0 0; }
button { font:inherit; font-size:12px; padding:.15em .7em; border-radius:4px; cursor:pointer;
         border:1px solid #99a; background:#fff; }
button.primary { background:#1d2330; color:#fff; border-color:#1d2330; }
select, input[type=text], input[type=password] { font:inherit; font-size:12px; padding:.1em .3em; }
.flash { background:#d6eaf8; border:1px solid #aed6f1; padding:.4em .8em; border-radius:4px; }
.banner { background:#fcf3cf; border:1px solid #f7dc6f; padding:.4em .8em; border-radius:4px; }
.tabs a { margin-right:1em; }
ul.hints li { margin-bottom:.3em; }
code { background:#eef0f3; padding:0 .25em; border-radius:3px; word-break:break-all; }
"""

JS = """
(function () {
  "use strict";
  var main = document.getElementById("live");
  var badge = document.getElementById("live-status");
  if (!main || !window.EventSource || !window.fetch) { return; }
  var wanted = (main.getAttribute("data-views") || "").split(",");
  var busy = false, again = false, timer = null;

  function setBadge(text, cls) {
    if (badge) { badge.textContent = text; badge.className = "live " + cls; }
  }
  function editing() {
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function later(ms) {
    if (timer === null) { timer = setTimeout(function () { timer = null; refresh(); }, ms); }
  }
  function refresh() {
    if (editing()) { later(2000); return; }
    if (busy) { again = true; return; }
    busy = true; again = false;
    fetch(window.location.href, {
      headers: { "X-Prodmon-Fragment": "1" }, credentials: "same-origin", cache: "no-store"
    }).then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          main.innerHTML = html;
          main.setAttribute("data-refreshed", String(Date.now()));
        }
      })
      .catch(function () {})
      .then(function () { busy = false; if (again) { later(500); } });
  }
  // From the version the page was rendered at: a change in between is not missed.
  var since = main.getAttribute("data-version") || "";
  var source = new EventSource("/events" + (/^[0-9]+$/.test(since) ? "?since=" + since : ""));
  source.addEventListener("open", function () { setBadge("live", "on"); });
  source.addEventListener("error", function () { setBadge("reconnecting", "off"); });
  source.addEventListener("update", function (event) {
    var msg;
    try { msg = JSON.parse(event.data); } catch (err) { return; }
    main.setAttribute("data-version", String(msg.version));
    var views = msg.views || [];
    for (var i = 0; i < views.length; i++) {
      if (wanted.indexOf(views[i]) >= 0) { refresh(); return; }
    }
  });
})();
"""
