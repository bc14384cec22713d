/*
 * fetchq charts: draw a run's timeline (fetchq.report.Timeline.to_json())
 * with uPlot.  Shared by the static run report and, later, a live admin page.
 *
 *   var charts = FetchqCharts.render(timeline, {
 *     width: el1,        // width vs in flight (+ rate), decisions marked
 *     throughput: el2,   // ok/s (and, without a problems target, failures
 *                        //  and drops per second, on the same axis)
 *     problems: el4,     // failed/retried/throttled/drops per second
 *     bytes: el5,        // bytes received per second
 *     latency: el3       // p50/p90/p99 and the controller's baseline
 *   }, {onReady: fn, onError: fn, height: 260});
 *   charts.update(newerTimeline);   // live pages: redraw with new data
 *   charts.destroy();
 *
 * Any target may be left out.  onReady() is called once every chart has
 * drawn; onError(error) for any error while drawing (the hooks run later,
 * outside render()'s own try).  Needs window.uPlot; makes no requests.
 * A timeline with several ``segments`` (a run and its resumes, laid end to
 * end) has each segment's start marked by a dashed line in every chart.
 * With the cursor off a chart, its legend shows each series' average and
 * peak (the time: the span shown) instead of blanks.
 */
(function (root) {
  "use strict";

  var COLORS = {
    width: "#1f5fbf",
    inFlight: "#e07b00",
    rate: "#2a9d8f",
    ok: "#2e8b57",
    failed: "#c0392b",
    retried: "#d68910",
    throttled: "#8e44ad",
    drops: "#7b241c",
    throttles: "#5b2c6f",
    p50: "#1f5fbf",
    p90: "#e07b00",
    p99: "#c0392b",
    baseline: "#222222",
    bytes: "#3b6ea8",
    segment: "#7a8290"
  };

  var REASON_COLORS = {
    grow: "#2e8b57",
    shrink: "#d68910",
    drop: "#c0392b",
    throttle: "#8e44ad",
    probe: "#1f5fbf",
    baseline: "#34495e",
    pace: "#d63384",
    "app-limited": "#95a5a6"
  };
  var OTHER_REASON = "#555555";

  var TIME_INCRS = [
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30,
    60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400
  ];

  function reasonColor(reason) {
    return REASON_COLORS.hasOwnProperty(reason) ? REASON_COLORS[reason] : OTHER_REASON;
  }

  function pad2(n) {
    return (n < 10 ? "0" : "") + n;
  }

  /* Seconds since the start as "42s", "3:05" or "1:02:03". */
  function fmtTime(seconds, span) {
    if (seconds == null) return "";
    if (span < 120) {
      var digits = span < 2 ? 2 : span < 20 ? 1 : 0;
      return (+seconds.toFixed(digits)) + "s";
    }
    var s = Math.round(seconds);
    var sign = s < 0 ? "-" : "";
    s = Math.abs(s);
    var h = Math.floor(s / 3600);
    var m = Math.floor((s % 3600) / 60);
    var r = s % 60;
    return sign + (h ? h + ":" + pad2(m) : m) + ":" + pad2(r);
  }

  function fmtNum(v, digits) {
    if (v == null || isNaN(v)) return "\u2013";
    var a = Math.abs(v);
    if (a >= 1000) return Math.round(v).toLocaleString("en");
    if (a >= 100 || Number.isInteger(v)) return v.toFixed(0);
    return v.toFixed(digits == null ? (a >= 10 ? 1 : 2) : digits);
  }

  function fmtMs(v) {
    if (v == null || isNaN(v)) return "\u2013";
    if (v >= 10000) return (v / 1000).toFixed(1) + " s";
    return fmtNum(v, v >= 10 ? 0 : 1) + " ms";
  }

  function fmtBytes(v) {
    if (v == null || isNaN(v)) return "\u2013";
    var units = ["B", "kB", "MB", "GB", "TB"];
    var i = 0;
    while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i += 1; }
    return (i ? v.toFixed(v >= 100 ? 0 : 1) : v.toFixed(0)) + " " + units[i];
  }

  /* What a legend shows for a series with the cursor off the chart. */
  function idleSummary(values, kind, fmt) {
    var seen = [];
    // The last value is the closing copy of the one before (closeSteps).
    for (var i = 0; i < values.length - 1; i++) {
      if (values[i] != null && !isNaN(values[i])) seen.push(values[i]);
    }
    if (!seen.length) return "none";
    var max = Math.max.apply(null, seen);
    if (kind === "median") {
      var sorted = seen.slice().sort(function (a, b) { return a - b; });
      return "median " + fmt(sorted[Math.floor((sorted.length - 1) / 2)]) +
        ", max " + fmt(max);
    }
    if (kind === "last") return "last " + fmt(seen[seen.length - 1]) + ", max " + fmt(max);
    var sum = 0;
    for (var j = 0; j < seen.length; j++) sum += seen[j];
    return "avg " + fmt(sum / seen.length) + ", max " + fmt(max);
  }

  function fmtMsTick(v) {
    if (v == null) return "";
    return v >= 1000 ? +(v / 1000).toPrecision(3) + "s" : +v.toPrecision(3) + "ms";
  }

  function any(values, pred) {
    for (var i = 0; i < values.length; i++) if (pred(values[i])) return true;
    return false;
  }
  function notNull(v) { return v != null; }
  function nonZero(v) { return v != null && v !== 0; }

  /* One value per step, with a closing point so the last bucket has width. */
  function closeSteps(values) {
    var out = values.slice();
    out.push(values.length ? values[values.length - 1] : null);
    return out;
  }

  function perSecond(counts, interval) {
    return counts.map(function (n) { return n == null ? null : n / interval; });
  }

  function toMs(values) {
    return values.map(function (v) { return v == null ? null : v * 1000; });
  }

  function xAxis(span) {
    return {
      stroke: "#444",
      grid: { stroke: "#eee" },
      ticks: { stroke: "#ddd" },
      incrs: TIME_INCRS,
      values: function (u, splits) {
        return splits.map(function (v) { return fmtTime(v, span); });
      }
    };
  }

  function yAxis(label, scale, side, fmt) {
    var axis = {
      scale: scale,
      label: label,
      labelSize: 22,
      stroke: "#444",
      grid: { stroke: side ? "transparent" : "#eee" },
      ticks: { stroke: "#ddd" },
      size: 56,
      values: function (u, splits) {
        return splits.map(function (v) { return fmt ? fmt(v) : fmtNum(v); });
      }
    };
    if (side) axis.side = side;
    return axis;
  }

  function line(label, color, opts) {
    var s = {
      label: label,
      stroke: color,
      width: 1.75,
      points: { show: false },
      value: function (u, v) { return fmtNum(v); }
    };
    for (var k in opts) if (opts.hasOwnProperty(k)) s[k] = opts[k];
    // With the cursor off the chart (idx null) the legend would show only
    // dashes: show the series' average and peak instead.
    var shown = s.value;
    var idle = s.idle || "avg";
    var idleFmt = s.idleFmt || fmtNum;
    s.value = function (u, v, sidx, idx) {
      if (idx == null && u.data && u.data[sidx]) {
        return idleSummary(u.data[sidx], idle, idleFmt);
      }
      return shown(u, v, sidx, idx);
    };
    return s;
  }

  function timeSeries(ctx) {
    return {
      label: "time",
      value: function (u, v, sidx, idx) {
        if (idx == null) return fmtTime(0, ctx.span) + "\u2013" + fmtTime(ctx.span, ctx.span);
        return fmtTime(v, ctx.span);
      }
    };
  }

  /* Dashed vertical lines where each segment after the first starts. */
  function drawSegments(u, segments) {
    if (!segments || segments.length < 2) return;
    u.root.setAttribute("data-segment-marks", String(segments.length - 1));
    var ctx = u.ctx;
    var b = u.bbox;
    var px = uPlot.pxRatio || root.devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(b.left, b.top, b.width, b.height);
    ctx.clip();
    ctx.strokeStyle = COLORS.segment;
    ctx.fillStyle = COLORS.segment;
    ctx.lineWidth = 1.25 * px;
    ctx.setLineDash([5 * px, 4 * px]);
    ctx.font = (11 * px) + "px system-ui, sans-serif";
    ctx.textBaseline = "top";
    for (var i = 1; i < segments.length; i++) {
      var x = Math.round(u.valToPos(segments[i].t, "x", true));
      ctx.beginPath();
      ctx.moveTo(x, b.top);
      ctx.lineTo(x, b.top + b.height);
      ctx.stroke();
      ctx.fillText(" run " + segments[i].n, x + 2 * px, b.top + 2 * px);
    }
    ctx.restore();
  }

  /* A chart ({opts, data}) that also marks where each segment starts. */
  function withSegments(chart, tl, ctx) {
    var segments = tl.segments || [];
    if (segments.length < 2) return chart;
    var opts = chart.opts;
    opts.hooks = opts.hooks || {};
    opts.hooks.draw = (opts.hooks.draw || []).concat(
      [ctx.guard(function (u) { drawSegments(u, segments); })]
    );
    return chart;
  }

  /* ------------------------------------------------------------------ */
  /* The three charts: each returns {opts, data} from a timeline.        */

  function widthChart(tl, ctx) {
    var hasRate = any(tl.rate, notNull);
    var series = [
      timeSeries(ctx),
      line("width", COLORS.width, { width: 2.25, paths: ctx.steps, idle: "last" }),
      line("in flight (max)", COLORS.inFlight, {
        paths: ctx.steps,
        fill: "rgba(224, 123, 0, 0.12)"
      })
    ];
    var data = [ctx.x, closeSteps(tl.width), closeSteps(tl.in_flight)];
    var axes = [xAxis(ctx.span), yAxis("jobs", "y")];
    var scales = { x: { time: false }, y: { range: zeroBased } };
    if (hasRate) {
      series.push(line("rate (launches/s)", COLORS.rate, {
        scale: "rate",
        dash: [6, 4],
        paths: ctx.steps,
        idle: "last",
        value: function (u, v) { return v == null ? "unlimited" : fmtNum(v) + "/s"; }
      }));
      data.push(closeSteps(tl.rate));
      axes.push(yAxis("launches/s", "rate", 1));
      scales.rate = { range: headroom(1.3) };
    }
    var decisions = tl.decisions || [];
    return withSegments({
      opts: {
        scales: scales,
        series: series,
        axes: axes,
        hooks: { draw: [ctx.guard(function (u) { drawDecisions(u, decisions); })] }
      },
      data: data,
      after: decisions.length ? decisionLegend(decisions, tl.decisions_seen) : null
    }, tl, ctx);
  }

  /* The series of attempts that did not succeed, per second: failed always,
     the others when any bucket has one. */
  function problemSeries(tl, ctx, series, data) {
    var iv = tl.interval;
    series.push(line("failed/s", COLORS.failed, { paths: ctx.steps, width: 1.5 }));
    data.push(closeSteps(perSecond(tl.failed, iv)));
    var optional = [
      ["retried/s", COLORS.retried, tl.retried, null],
      ["throttled/s", COLORS.throttled, tl.throttled, null],
      ["controller drops/s", COLORS.drops, tl.drops || [], [6, 3]],
      ["controller throttles/s", COLORS.throttles, tl.throttles || [], [2, 3]]
    ];
    optional.forEach(function (o) {
      if (!any(o[2], nonZero)) return;
      var s = line(o[0], o[1], { paths: ctx.steps, width: 1.5 });
      if (o[3]) s.dash = o[3];
      series.push(s);
      data.push(closeSteps(perSecond(o[2], iv)));
    });
  }

  function throughputChart(tl, ctx) {
    var series = [
      timeSeries(ctx),
      line("ok/s", COLORS.ok, { width: 2, paths: ctx.steps, fill: "rgba(46, 139, 87, 0.12)" })
    ];
    var data = [ctx.x, closeSteps(tl.throughput)];
    // One axis: 3 failures/s are drawn a hundredth as high as 300 ok/s.  With
    // a chart of their own (a problems target), failures are left out here.
    if (!ctx.targets.problems) problemSeries(tl, ctx, series, data);
    return withSegments({
      opts: {
        scales: { x: { time: false }, y: { range: zeroBased } },
        series: series,
        axes: [xAxis(ctx.span), yAxis(ctx.targets.problems ? "ok per second" : "per second", "y")]
      },
      data: data
    }, tl, ctx);
  }

  function problemsChart(tl, ctx) {
    var series = [timeSeries(ctx)];
    var data = [ctx.x];
    problemSeries(tl, ctx, series, data);
    return withSegments({
      opts: {
        scales: { x: { time: false }, y: { range: zeroBased } },
        series: series,
        axes: [xAxis(ctx.span), yAxis("not ok per second", "y")]
      },
      data: data
    }, tl, ctx);
  }

  function bytesChart(tl, ctx) {
    var perS = perSecond(tl.bytes || tl.t.map(function () { return 0; }), tl.interval);
    var fmt = function (u, v) { return fmtBytes(v) + "/s"; };
    return withSegments({
      opts: {
        scales: { x: { time: false }, y: { range: zeroBased } },
        series: [
          timeSeries(ctx),
          line("bytes/s", COLORS.bytes, {
            width: 2, paths: ctx.steps, fill: "rgba(59, 110, 168, 0.12)", value: fmt,
            idleFmt: function (v) { return fmtBytes(v) + "/s"; }
          })
        ],
        axes: [xAxis(ctx.span), yAxis("bytes per second", "y", 0, fmtBytes)]
      },
      data: [ctx.x, closeSteps(perS)]
    }, tl, ctx);
  }

  function latencyChart(tl, ctx) {
    var p50 = toMs(tl.p50), p90 = toMs(tl.p90), p99 = toMs(tl.p99);
    var base = toMs(tl.baseline);
    var ms = function (u, v) { return fmtMs(v); };
    var msIdle = { idle: "median", idleFmt: fmtMs };
    var series = [
      timeSeries(ctx),
      line("p50", COLORS.p50, { width: 2, paths: ctx.steps, value: ms, idle: "median", idleFmt: fmtMs }),
      line("p90", COLORS.p90, { paths: ctx.steps, value: ms, idle: "median", idleFmt: fmtMs }),
      line("p99", COLORS.p99, { paths: ctx.steps, value: ms, idle: "median", idleFmt: fmtMs })
    ];
    var data = [ctx.x, closeSteps(p50), closeSteps(p90), closeSteps(p99)];
    if (any(base, notNull)) {
      series.push(line("controller baseline", COLORS.baseline, {
        dash: [5, 4], width: 1.5, paths: ctx.steps, spanGaps: true, value: ms,
        idle: msIdle.idle, idleFmt: msIdle.idleFmt
      }));
      data.push(closeSteps(base));
    }
    // A log scale when the tail is far above the middle, else linear from 0.
    var lo = Infinity, hi = 0;
    [p50, p99, base].forEach(function (vs) {
      vs.forEach(function (v) {
        if (v != null && v > 0) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      });
    });
    var log = hi > 0 && hi / lo > 30;
    var y = log ? { distr: 3, log: 10 } : { range: zeroBased };
    return withSegments({
      opts: {
        scales: { x: { time: false }, y: y },
        series: series,
        axes: [xAxis(ctx.span), yAxis(log ? "latency (log scale)" : "latency", "y", 0, fmtMsTick)]
      },
      data: data
    }, tl, ctx);
  }

  /* A y range from 0 to a little above the top. */
  function headroom(factor) {
    return function (u, min, max) {
      if (max == null || !isFinite(max) || max <= 0) return [0, 1];
      return [0, max * factor];
    };
  }
  var zeroBased = headroom(1.08);

  /* Controller decisions: dots on the width line for the queue's own,
     short ticks along the bottom for lanes'; coloured by reason. */
  function drawDecisions(u, decisions) {
    if (!decisions.length) return;
    var ctx = u.ctx;
    var b = u.bbox;
    var px = uPlot.pxRatio || root.devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(b.left, b.top, b.width, b.height);
    ctx.clip();
    var r = 3.2 * px;
    for (var i = 0; i < decisions.length; i++) {
      var d = decisions[i];
      var x = u.valToPos(d.t, "x", true);
      if (x < b.left - r || x > b.left + b.width + r) continue;
      var color = reasonColor(d.reason);
      if (d.key === null) {
        var y = u.valToPos(d.width, "y", true);
        ctx.beginPath();
        ctx.arc(x, y, d.changed ? r : r * 0.7, 0, 2 * Math.PI);
        ctx.fillStyle = color;
        ctx.fill();
        ctx.lineWidth = px;
        ctx.strokeStyle = "#fff";
        ctx.stroke();
      } else {
        var bottom = b.top + b.height;
        ctx.beginPath();
        ctx.moveTo(x, bottom);
        ctx.lineTo(x, bottom - 7 * px);
        ctx.lineWidth = 1.5 * px;
        ctx.strokeStyle = color;
        ctx.stroke();
      }
    }
    ctx.restore();
  }

  function decisionLegend(decisions, seen) {
    var counts = {}, order = [], lanes = 0, queue = 0;
    decisions.forEach(function (d) {
      if (!counts.hasOwnProperty(d.reason)) { counts[d.reason] = 0; order.push(d.reason); }
      counts[d.reason] += 1;
      if (d.key === null) queue += 1; else lanes += 1;
    });
    var el = document.createElement("div");
    el.className = "fq-decision-legend";
    var head = document.createElement("span");
    var shown = decisions.length + (seen > decisions.length ? " of " + seen : "");
    head.textContent = "Controller decisions (" + shown + "): ";
    el.appendChild(head);
    order.forEach(function (reason) {
      var item = document.createElement("span");
      item.className = "fq-reason";
      var dot = document.createElement("i");
      dot.style.background = reasonColor(reason);
      item.appendChild(dot);
      item.appendChild(document.createTextNode(reason + " " + counts[reason]));
      el.appendChild(item);
    });
    var note = document.createElement("span");
    note.className = "fq-note";
    var parts = [];
    if (queue) parts.push("dots: queue width");
    if (lanes) parts.push("ticks at the bottom: lanes");
    note.textContent = parts.join("; ");
    el.appendChild(note);
    return el;
  }

  /* ------------------------------------------------------------------ */

  var BUILDERS = {
    width: widthChart,
    throughput: throughputChart,
    problems: problemsChart,
    bytes: bytesChart,
    latency: latencyChart
  };

  function render(timeline, targets, options) {
    if (typeof uPlot !== "function") throw new Error("uPlot is not loaded");
    options = options || {};
    var height = options.height || 260;
    var onError = options.onError || function (e) { throw e; };
    var plots = [];
    var extras = [];
    var pending = 0;
    var readyCalled = false;

    function guard(fn) {
      return function (u) {
        try { fn(u); } catch (e) { onError(e); }
      };
    }

    function ready() {
      pending -= 1;
      if (pending <= 0 && !readyCalled) {
        readyCalled = true;
        if (options.onReady) options.onReady();
      }
    }

    function build(tl) {
      var t = tl.t || [];
      // The last step ends at the timeline's end (its bucket is partial).
      var last = t.length ? t[t.length - 1] : 0;
      var xEnd = last + tl.interval;
      if (typeof tl.end === "number" && tl.end < xEnd) xEnd = Math.max(last, tl.end);
      var ctx = {
        x: closeSteps(t).map(function (v, i) { return i < t.length ? v : xEnd; }),
        span: xEnd - (t.length ? t[0] : 0),
        steps: uPlot.paths.stepped({ align: 1 }),
        guard: guard,
        targets: targets
      };
      var names = Object.keys(BUILDERS).filter(function (k) { return targets[k]; });
      if (!t.length) {
        names.forEach(function (name) {
          var p = document.createElement("p");
          p.className = "fq-empty";
          p.textContent = "No events were recorded.";
          targets[name].appendChild(p);
          extras.push(p);
        });
        if (options.onReady) { readyCalled = true; options.onReady(); }
        return;
      }
      pending = names.length;
      names.forEach(function (name) {
        var el = targets[name];
        var chart = BUILDERS[name](tl, ctx);
        var opts = chart.opts;
        opts.width = Math.max(320, el.clientWidth || 800);
        opts.height = height;
        opts.cursor = { sync: { key: "fetchq" }, drag: { x: true, y: false } };
        opts.legend = { live: true };
        opts.hooks = opts.hooks || {};
        opts.hooks.ready = [guard(ready)];
        var plot = new uPlot(opts, chart.data, el);
        plot.fqTarget = el;
        plots.push(plot);
        if (chart.after) { el.appendChild(chart.after); extras.push(chart.after); }
      });
    }

    function destroy() {
      plots.forEach(function (p) { p.destroy(); });
      extras.forEach(function (e) { if (e.parentNode) e.parentNode.removeChild(e); });
      plots = [];
      extras = [];
    }

    function onResize() {
      plots.forEach(function (p) {
        p.setSize({ width: Math.max(320, p.fqTarget.clientWidth || 800), height: height });
      });
    }

    build(timeline);
    root.addEventListener("resize", onResize);

    return {
      plots: function () { return plots.slice(); },
      /* Redraw with a newer timeline (a live page polls and calls this). */
      update: function (tl) { destroy(); readyCalled = true; build(tl); },
      destroy: function () { destroy(); root.removeEventListener("resize", onResize); }
    };
  }

  root.FetchqCharts = { render: render, formatTime: fmtTime, formatBytes: fmtBytes };
})(window);
