// The batch page's charts, drawn with uPlot (served by sandstack itself):
// time axes, values and anomaly scores under the cursor, drag to zoom
// (double-click zooms out), a larger view per metric, a mark for every
// judgement (alert, threshold, change, LLM) whose words show on hover, and
// the display settings kept in this browser. Charts are drawn as they
// scroll into view and later pages are fetched as the last one is reached,
// so a batch of hundreds of metrics opens at once. Without this file the
// page still shows its SVG charts and page links.
(function () {
  "use strict";
  var grid = document.getElementById("charts");
  if (!grid || typeof uPlot === "undefined") { return; }

  var SETTINGS_KEY = "sandstack-display";
  var DEFAULTS = { size: "m", columns: "auto", line: "1", markers: true, legend: true };
  var HEIGHTS = { s: 110, m: 180, l: 290 };
  var KINDS = [
    ["alert", "alert", "--alert"],
    ["threshold", "threshold", "--threshold"],
    ["change", "change", "--change"],
    ["llm", "LLM", "--llm"]
  ];
  var batch = grid.getAttribute("data-batch");
  var windowText = grid.getAttribute("data-window") || "100";
  var query = grid.getAttribute("data-q") || "";
  var nextPage = parseInt(grid.getAttribute("data-page") || "1", 10);
  var more = true;
  var loading = false;
  // Keyed by metric name, which the batch chooses: a Map, so a name such
  // as `constructor` or `__proto__` is a name like any other.
  var data = new Map(); // metric -> its series from the API
  var plots = new Map(); // figure -> uPlot
  var tip = document.getElementById("mark-tip");
  // For the browser tests: the live charts, and when the first was drawn
  // (ms since the page was asked for: performance's time origin).
  window.__sandstack = { plots: plots, data: data, readyMs: null };

  function readSettings() {
    var s = {};
    try { s = JSON.parse(localStorage.getItem(SETTINGS_KEY) || "{}") || {}; } catch (e) { s = {}; }
    var out = {};
    Object.keys(DEFAULTS).forEach(function (k) { out[k] = (k in s) ? s[k] : DEFAULTS[k]; });
    return out;
  }
  var settings = readSettings();

  function saveSettings() {
    try { localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings)); } catch (e) { /* kept for this page only */ }
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function applyLayout() {
    ["cols-1", "cols-2", "cols-3", "cols-4"].forEach(function (c) { grid.classList.remove(c); });
    if (settings.columns !== "auto") { grid.classList.add("cols-" + settings.columns); }
    grid.classList.toggle("no-legend", !settings.legend);
    document.getElementById("expanded").classList.toggle("no-legend", !settings.legend);
  }

  // The display panel's controls show and change the settings.
  document.querySelectorAll("#display [data-setting]").forEach(function (el) {
    var key = el.getAttribute("data-setting");
    if (el.type === "checkbox") { el.checked = !!settings[key]; } else { el.value = String(settings[key]); }
    el.addEventListener("change", function () {
      settings[key] = el.type === "checkbox" ? el.checked : el.value;
      saveSettings();
      applyLayout();
      redrawAll();
    });
  });

  function indexOf(ts, t) {
    var lo = 0, hi = ts.length - 1;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (ts[mid] < t) { lo = mid + 1; } else { hi = mid; }
    }
    if (lo > 0 && Math.abs(ts[lo - 1] - t) < Math.abs(ts[lo] - t)) { lo -= 1; }
    return lo;
  }

  // uPlot's columns: time, value, score, then one per kind of mark (the
  // value where a judgement is, null elsewhere).
  function columns(d) {
    var n = d.t.length;
    var cols = [d.t, d.v, d.s];
    var at = {};
    KINDS.forEach(function (k) { at[k[0]] = new Array(n).fill(null); });
    d.marks.forEach(function (m) {
      if (!n || !at[m.kind]) { return; }
      var i = indexOf(d.t, m.t);
      var y = d.v[i];
      for (var j = i; y === null && j >= 0; j--) { y = d.v[j]; }
      at[m.kind][i] = y;
    });
    KINDS.forEach(function (k) { cols.push(at[k[0]]); });
    return cols;
  }

  function marksAt(d, idx) {
    return d.marks.filter(function (m) { return indexOf(d.t, m.t) === idx; });
  }

  function showTip(u, d) {
    var idx = u.cursor.idx;
    var found = (idx === null || idx === undefined || !settings.markers) ? [] : marksAt(d, idx);
    if (!found.length || u.cursor.left < 0) { tip.hidden = true; return; }
    tip.textContent = "";
    found.forEach(function (m) {
      var label = KINDS.filter(function (k) { return k[0] === m.kind; })[0];
      var b = document.createElement("b");
      b.textContent = (label ? label[1] : m.kind) + " · " + new Date(m.t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC";
      tip.appendChild(b);
      if (m.text) { tip.appendChild(document.createTextNode(m.text + "\n")); }
    });
    var rect = u.over.getBoundingClientRect();
    tip.hidden = false;
    var x = rect.left + u.cursor.left + 14;
    if (x + tip.offsetWidth > window.innerWidth - 8) { x = rect.left + u.cursor.left - tip.offsetWidth - 14; }
    tip.style.left = Math.max(4, x) + "px";
    tip.style.top = (rect.top + u.cursor.top + 14) + "px";
  }

  function options(d, width, height, compact) {
    var line = parseFloat(settings.line) || 1;
    var axis = { stroke: cssVar("--faint"), grid: { stroke: cssVar("--grid"), width: 1 }, ticks: { stroke: cssVar("--grid"), width: 1 } };
    var smax = (d.s || []).reduce(function (a, v) { return v !== null && v > a ? v : a; }, Math.max(1, threshold));
    var series = [
      { label: "time (UTC)" },
      { label: "value", stroke: cssVar("--value"), width: line, spanGaps: false },
      { label: "score", scale: "score", stroke: cssVar("--score"), width: Math.max(1, line - 1) }
    ];
    KINDS.forEach(function (k) {
      var color = cssVar(k[2]);
      series.push({
        label: k[1], stroke: color, fill: color, width: 0, show: !!settings.markers,
        paths: function () { return null; },
        points: { show: true, size: compact ? 6 : 9, width: 2, stroke: color, fill: color }
      });
    });
    return {
      width: width, height: height,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); },
      scales: { x: { time: true }, score: { range: [0, smax * 1.05] } },
      axes: compact ? [{ show: false }, { show: false }, { show: false, scale: "score" }] : [
        Object.assign({}, axis),
        Object.assign({}, axis, { size: 52 }),
        Object.assign({}, axis, { scale: "score", side: 1, stroke: cssVar("--score"), grid: { show: false }, size: 40 })
      ],
      series: series,
      legend: { show: !compact },
      cursor: compact ? { show: false } : { drag: { x: true, y: false, setScale: true } },
      hooks: compact ? {} : { setCursor: [function (u) { showTip(u, d); }] }
    };
  }

  var threshold = 0.8;

  function draw(fig) {
    var d = data.get(fig.getAttribute("data-metric"));
    if (!d) { return; }
    var old = plots.get(fig);
    if (old) { old.destroy(); }
    var holder = fig.querySelector(".plot");
    if (!holder) {
      holder = document.createElement("div");
      holder.className = "plot";
      fig.appendChild(holder);
    }
    // The canvas has no text of its own: say what it shows.
    holder.setAttribute("role", "img");
    holder.setAttribute("aria-label", d.metric + ": " + d.t.length + " points, " + d.marks.length + " marked");
    var svg = fig.querySelector("svg.chart");
    if (svg) { svg.remove(); }
    var width = Math.max(200, fig.clientWidth - 20);
    var u = new uPlot(options(d, width, HEIGHTS[settings.size] || HEIGHTS.m, false), columns(d), holder);
    u.over.addEventListener("mouseleave", function () { tip.hidden = true; });
    plots.set(fig, u);
    if (window.__sandstack.readyMs === null) { window.__sandstack.readyMs = performance.now(); }
  }

  var seen = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) {
      if (e.isIntersecting && !plots.has(e.target)) { draw(e.target); }
    });
  }, { rootMargin: "300px" });

  function redrawAll() {
    plots.forEach(function (u, fig) { draw(fig); });
    drawSparks();
  }

  // A figure for a metric of a later page (names set as text, never HTML).
  function figure(name) {
    var fig = document.createElement("figure");
    fig.className = "chart";
    fig.setAttribute("data-metric", name);
    var cap = document.createElement("figcaption");
    var span = document.createElement("span");
    span.className = "name";
    span.textContent = name;
    cap.appendChild(span);
    var b = document.createElement("button");
    b.type = "button";
    b.className = "expand";
    b.title = "a larger view of this chart";
    b.setAttribute("aria-label", "a larger view of " + name);
    b.textContent = "⤢";
    cap.appendChild(b);
    fig.appendChild(cap);
    return fig;
  }

  function url(extra) {
    var p = new URLSearchParams({ window: windowText, q: query });
    Object.keys(extra).forEach(function (k) { p.set(k, extra[k]); });
    return "/api/batches/" + encodeURIComponent(batch) + "/series?" + p.toString();
  }

  function loadPage() {
    if (loading || !more) { return; }
    loading = true;
    var page = nextPage;
    fetch(url({ page: page }), { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (j) {
        loading = false;
        take(j);
        // Later pages now come as the page is scrolled; the link is not needed.
        var link = document.getElementById("chart-more");
        if (link) { link.hidden = true; }
      })
      .catch(function () { loading = false; more = false; });
  }

  new IntersectionObserver(function (entries) {
    if (entries.some(function (e) { return e.isIntersecting; })) { loadPage(); }
  }, { rootMargin: "600px" }).observe(document.getElementById("chart-sentinel"));

  // The larger view.
  var dialog = document.getElementById("expanded");
  var big = null;
  grid.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button.expand") : null;
    if (!button) { return; }
    var fig = button.closest("figure.chart");
    var d = data.get(fig.getAttribute("data-metric"));
    if (!d) { return; }
    dialog.querySelector(".name").textContent = d.metric;
    dialog.showModal();
    if (big) { big.destroy(); }
    var holder = dialog.querySelector(".big");
    big = new uPlot(options(d, Math.max(300, holder.clientWidth), Math.min(520, window.innerHeight - 160), false), columns(d), holder);
    window.__sandstack.expanded = big;
  });
  dialog.querySelector(".close").addEventListener("click", function () { dialog.close(); });
  dialog.addEventListener("close", function () { if (big) { big.destroy(); big = null; window.__sandstack.expanded = null; } });

  // The anomaly list's small charts: the metric around the judgement.
  // Metrics not on the loaded pages come in one request for them all.
  var sparkData = new Map();
  var sparkAsked = false;
  function drawSparks() {
    var sparks = document.querySelectorAll(".spark");
    var missing = [];
    sparks.forEach(function (el) {
      var name = el.getAttribute("data-metric");
      if (!data.has(name) && !sparkData.has(name) && missing.indexOf(name) < 0) { missing.push(name); }
    });
    if (missing.length && !sparkAsked) {
      sparkAsked = true;
      fetch(url({ metrics: missing.join("\n") }), { headers: { "Accept": "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (j) {
          (j.metrics || []).forEach(function (m) { sparkData.set(m.metric, m); });
          drawSparks();
        })
        .catch(function () { /* the rows still read without their charts */ });
    }
    sparks.forEach(function (el) {
      var name = el.getAttribute("data-metric");
      var d = data.get(name) || sparkData.get(name);
      if (!d) { return; }
      if (el.__plot) { el.__plot.destroy(); }
      el.textContent = "";
      el.__plot = new uPlot(options(d, el.clientWidth || 160, el.clientHeight || 48, true), columns(d), el);
    });
  }

  // The theme changed (app.js): charts take their colours again.
  document.addEventListener("sandstack-theme", redrawAll);
  window.addEventListener("resize", function () {
    clearTimeout(window.__sandstackResize);
    window.__sandstackResize = setTimeout(redrawAll, 150);
  });

  // This page's data came with it; later pages are asked for.
  function take(j) {
    if (!j.metrics) { more = false; return; }
    threshold = j.threshold;
    var figs = new Map();
    grid.querySelectorAll("figure.chart").forEach(function (f) { figs.set(f.getAttribute("data-metric"), f); });
    j.metrics.forEach(function (m) {
      data.set(m.metric, m);
      var fig = figs.get(m.metric);
      if (!fig) { fig = figure(m.metric); grid.appendChild(fig); }
      seen.observe(fig);
    });
    more = j.more;
    nextPage = j.page + 1;
    drawSparks();
  }

  applyLayout();
  var embedded = document.getElementById("chart-data");
  try { take(JSON.parse(embedded ? embedded.textContent : "{}")); } catch (e) { loadPage(); }
})();
