// Flotilla sim report: draws each run's curves with uPlot from the JSON in
// #flotilla-data. Everything from the data reaches the page as canvas text or
// textContent, never as HTML.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("flotilla-data").textContent);

  // Simulated seconds → "45s", "12m", "1h30m", "2d04h".
  function fmtDur(s) {
    if (s == null || isNaN(s)) return "—";
    var neg = s < 0;
    s = Math.round(Math.abs(s));
    var out;
    if (s < 60) out = s + "s";
    else if (s < 3600) out = Math.floor(s / 60) + "m" + (s % 60 ? pad(s % 60) + "s" : "");
    else if (s < 86400) out = Math.floor(s / 3600) + "h" + (s % 3600 ? pad(Math.floor((s % 3600) / 60)) + "m" : "");
    else out = Math.floor(s / 86400) + "d" + (s % 86400 ? pad(Math.floor((s % 86400) / 3600)) + "h" : "");
    return (neg ? "-" : "") + out;
  }
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  var versionColors = ["#868e96", "#1c7ed6", "#2b8a3e", "#e8590c", "#7048e8", "#c2255c", "#0b7285", "#5c940d"];
  var phaseColors = {
    Idle: "#adb5bd", Staging: "#74c0fc", Verifying: "#339af0", CutoverReady: "#1971c2",
    WaitingForStop: "#7048e8", Committed: "#2f9e44", Failed: "#e03131", Reverting: "#f59f00", RolledBack: "#d9480f"
  };
  var extraColors = ["#0ca678", "#ae3ec9", "#f76707", "#495057"];

  // Sensible steps for a simulated-time axis, in seconds.
  var timeIncrs = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 1209600, 2592000];

  function hexAlpha(hex, a) {
    var n = parseInt(hex.slice(1, 7), 16);
    return "rgba(" + (n >> 16 & 255) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + a + ")";
  }

  // Fault windows under the curves; markers and the violation above them.
  function overlay(run) {
    function x(u, v) { return u.valToPos(v, "x", true); }
    return {
      hooks: {
        drawClear: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, left = u.bbox.left, right = left + u.bbox.width;
          ctx.save();
          run.faults.forEach(function (f) {
            var x0 = Math.max(left, x(u, f.start)), x1 = Math.min(right, x(u, f.end));
            if (x1 < left || x0 > right) return;
            var w = Math.max(x1 - x0, 2 * devicePixelRatio);
            ctx.fillStyle = hexAlpha(f.color, f.end > f.start ? 0.14 : 0.6);
            ctx.fillRect(x0, top, w, h);
          });
          ctx.restore();
        }],
        draw: [function (u) {
          var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height, left = u.bbox.left, right = left + u.bbox.width;
          var px = devicePixelRatio;
          ctx.save();
          ctx.font = (11 * px) + "px system-ui, sans-serif";
          ctx.textAlign = "left";
          ctx.textBaseline = "top";
          // Fault labels along the top edge, staggered so overlaps stay legible.
          run.faults.forEach(function (f, i) {
            var x0 = x(u, f.start);
            if (x0 < left || x0 > right) return;
            ctx.fillStyle = f.color;
            ctx.fillText(f.kind, x0 + 3 * px, top + 3 * px + (i % 3) * 13 * px);
          });
          ctx.setLineDash([4 * px, 3 * px]);
          ctx.lineWidth = px;
          run.markers.forEach(function (m, i) {
            var xm = x(u, m.at);
            if (xm < left || xm > right) return;
            ctx.strokeStyle = "#343a40";
            ctx.beginPath(); ctx.moveTo(xm, top); ctx.lineTo(xm, top + h); ctx.stroke();
            ctx.fillStyle = "#343a40";
            ctx.textBaseline = "bottom";
            var text = m.label || m.kind, tw = ctx.measureText(text).width;
            ctx.fillText(text, xm + tw + 6 * px > right ? xm - tw - 3 * px : xm + 3 * px, top + h - 3 * px - (i % 3) * 13 * px);
          });
          if (run.violation) {
            var xv = x(u, run.violation.at);
            ctx.setLineDash([]);
            ctx.lineWidth = 2 * px;
            ctx.strokeStyle = "#e03131";
            ctx.beginPath(); ctx.moveTo(xv, top); ctx.lineTo(xv, top + h); ctx.stroke();
            ctx.fillStyle = "#e03131";
            ctx.textBaseline = "top";
            ctx.font = "bold " + (11 * px) + "px system-ui, sans-serif";
            var label = "✗ " + run.violation.checker;
            var tw = ctx.measureText(label).width;
            ctx.fillText(label, xv + tw + 6 * px > right ? xv - tw - 4 * px : xv + 4 * px, top + 3 * px);
          }
          ctx.restore();
        }]
      }
    };
  }

  // Versions are lines (one curve per version, crossing as the rollout
  // goes); phases are stacked bands (where the whole fleet stands), with the
  // legend and cursor showing each phase's own count.
  // The legend shows the final counts while the cursor is off the chart.
  function finalLegend(run) {
    var last = run.t.length - 1;
    function show(u) { if (last >= 0 && u.cursor.idx == null) u.setLegend({ idx: last }); }
    return { hooks: { ready: [show], setCursor: [show] } };
  }

  function seriesFor(run, kind) {
    var s = run[kind], stacked = kind === "phases";
    var series = [{ label: "sim time", value: function (u, v) { return fmtDur(v); } }];
    var cols = [run.t], bands = [], sum = run.t.map(function () { return 0; });
    s.keys.forEach(function (k, i) {
      var color = stacked ? (phaseColors[k] || extraColors[i % extraColors.length])
        : versionColors[i % versionColors.length];
      var raw = s.values[i];
      var sd = { label: k, stroke: color, width: stacked ? 1 : 2, points: { show: false } };
      if (stacked) {
        sum = sum.map(function (v, j) { return v + raw[j]; });
        cols.push(sum);
        sd.value = function (u, v, si, idx) { return idx == null ? "--" : raw[idx]; };
        if (i === 0) sd.fill = hexAlpha(color, 0.45);
        else bands.push({ series: [i + 1, i], fill: hexAlpha(color, 0.45) });
      } else {
        cols.push(raw);
      }
      series.push(sd);
    });
    if (!stacked && run.online) {
      series.push({ label: "online", stroke: "#495057", width: 1, dash: [5, 4], points: { show: false } });
      cols.push(run.online);
    }
    return { series: series, data: cols, bands: bands };
  }

  function draw(el) {
    var run = data.runs[+el.dataset.run], kind = el.dataset.chart;
    var sd = seriesFor(run, kind);
    var width = Math.max(320, el.clientWidth);
    var opts = {
      width: width,
      height: 280,
      series: sd.series,
      bands: sd.bands,
      scales: { x: { time: false }, y: { range: function (u, min, max) { return [0, Math.max(max, 1) * 1.05]; } } },
      axes: [
        { incrs: timeIncrs, space: 70, values: function (u, splits) { return splits.map(fmtDur); } },
        { size: 56 }
      ],
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      plugins: [overlay(run), finalLegend(run)]
    };
    var u = new uPlot(opts, sd.data, el);
    el._uplot = u;
    return u;
  }

  var charts = [];
  document.querySelectorAll(".chart").forEach(function (el) { charts.push(draw(el)); });
  var pending = 0;
  window.addEventListener("resize", function () {
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(function () {
      charts.forEach(function (u) {
        var w = Math.max(320, u.root.parentNode.clientWidth);
        if (w !== u.width) u.setSize({ width: w, height: u.height });
      });
    });
  });
  document.documentElement.dataset.charts = String(charts.length);
})();
