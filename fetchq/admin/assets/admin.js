/*
 * fetchq admin page: polls the JSON API (the HttpOnly cookie carries the
 * token), draws the report's charts (FetchqCharts) and posts changes.
 * Every value from the server is written with textContent, never as HTML.
 */
(function () {
  "use strict";
  var API = "/api/v1/";
  var body = document.body;
  var charts = null;
  var editing = {};

  function $(id) { return document.getElementById(id); }

  function fail(message) {
    body.dataset.rendered = "error";
    var box = $("report-errors");
    box.textContent = message;
  }

  function say(text, isError) {
    var m = $("message");
    m.textContent = text;
    m.className = "note" + (isError ? " error" : "");
  }

  function get(path) {
    return fetch(API + path, {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (r.status === 401) { throw new Error("not logged in: open a new one-time link"); }
        return r.json().then(function (data) {
          if (!r.ok) { throw new Error(data.error || ("HTTP " + r.status)); }
          return data;
        });
      });
  }

  function post(path, data) {
    return fetch(API + path, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify(data || {})
    }).then(function (r) {
      return r.json().then(function (answer) {
        if (!r.ok) { throw new Error(answer.error || ("HTTP " + r.status)); }
        return answer;
      });
    });
  }

  function act(path, data, done) {
    return post(path, data).then(function (answer) {
      say(done ? done(answer) : "done", false);
      refresh();
      return answer;
    }).catch(function (e) { say(String(e.message || e), true); });
  }

  function fmt(v, digits) {
    if (v === null || v === undefined) { return "\u2013"; }
    if (typeof v === "number") {
      if (Math.abs(v) >= 1000) { return Math.round(v).toLocaleString("en"); }
      return String(+v.toFixed(digits === undefined ? 2 : digits));
    }
    return String(v);
  }

  function cell(row, text, cls) {
    var td = document.createElement("td");
    td.textContent = text;
    if (cls) { td.className = cls; }
    row.appendChild(td);
    return td;
  }

  function button(label, onClick) {
    var b = document.createElement("button");
    b.textContent = label;
    b.className = "small";
    b.type = "button";
    b.addEventListener("click", onClick);
    return b;
  }

  function figures(s) {
    var rows = s.rows || null;
    var items = [
      ["width", s.width],
      ["rate/s", s.rate === null ? "unlimited" : s.rate],
      ["in flight", s.in_flight],
      ["pending", rows ? rows.pending : s.pending],
      ["done", rows ? rows.finished : s.done],
      ["ok", (s.outcomes || {}).ok || 0],
      ["failed", (s.outcomes || {}).failed || 0],
      ["retries", s.retries],
      ["jobs/s", s.throughput],
      ["holds", (s.holds || []).length],
      ["controller", s.controller && s.controller.attached ? "on" : "off"]
    ];
    var box = $("figures");
    box.textContent = "";
    items.forEach(function (item) {
      var div = document.createElement("div");
      div.className = "fig";
      div.dataset.name = item[0];
      var b = document.createElement("b");
      b.textContent = fmt(item[1], 1);
      var span = document.createElement("span");
      span.textContent = item[0];
      div.appendChild(b);
      div.appendChild(span);
      box.appendChild(div);
    });
  }

  function showStatus(s) {
    body.dataset.state = s.state;
    body.dataset.width = String(s.width);
    $("state").textContent = s.state;
    $("engine").textContent = s.engine;
    $("updated").textContent = new Date().toLocaleTimeString();
    if (!editing.width) { $("width-input").value = s.width; }
    if (!editing.rate) { $("rate-input").value = s.rate === null ? "" : s.rate + "/s"; }
    figures(s);
  }

  function showLanes(data) {
    var tbody = $("lanes").tBodies[0];
    tbody.textContent = "";
    data.lanes.forEach(function (lane) {
      var row = document.createElement("tr");
      cell(row, lane.lane === null ? "(none)" : lane.lane);
      cell(row, fmt(lane.pending));
      cell(row, fmt(lane.underway));
      cell(row, fmt(lane.width));
      cell(row, fmt(lane.rate));
      cell(row, lane.held_for ? fmt(lane.held_for, 0) + "s" : "");
      var td = cell(row, "");
      if (lane.lane !== null) {
        var key = encodeURIComponent(lane.lane);
        td.appendChild(button("hold 60s", function () {
          act("lanes/" + key, {hold: "60s"}, function () { return lane.lane + " held for 60s"; });
        }));
        td.appendChild(document.createTextNode(" "));
        td.appendChild(button("release", function () {
          act("lanes/" + key, {release: true}, function () { return lane.lane + " released"; });
        }));
      }
      tbody.appendChild(row);
    });
  }

  function showJobs(data) {
    var tbody = $("jobs").tBodies[0];
    tbody.textContent = "";
    data.jobs.forEach(function (job) {
      var row = document.createElement("tr");
      cell(row, job.id);
      cell(row, job.lane === null ? "" : job.lane);
      cell(row, job.what, "what");
      cell(row, fmt(job.attempts));
      cell(row, fmt(job.running_for, 1) + "s");
      var td = cell(row, "");
      td.appendChild(button("cancel", function () {
        act("jobs/" + encodeURIComponent(job.id) + "/cancel", {}, function () {
          return "job " + job.id + " cancelled";
        });
      }));
      tbody.appendChild(row);
    });
  }

  function drawCharts(timeline) {
    if (!timeline || !timeline.t) { return; }
    if (charts === null) {
      charts = FetchqCharts.render(timeline, {
        width: $("chart-width"),
        throughput: $("chart-throughput"),
        latency: $("chart-latency")
      }, {
        height: 220,
        onError: function (e) { fail("error: " + (e && e.stack || e)); },
        onReady: function () {
          if (body.dataset.rendered !== "error") { body.dataset.rendered = "ok"; }
        }
      });
    } else {
      charts.update(timeline);
    }
  }

  function refresh() {
    return get("status").then(showStatus).catch(function (e) { say(String(e.message || e), true); });
  }

  function tick(n) {
    refresh();
    if (n % 2 === 0) { get("timeline").then(drawCharts).catch(function () {}); }
    if (n % 3 === 0) {
      get("lanes?sort=backlog&limit=50").then(showLanes).catch(function () {});
      get("jobs?state=underway&limit=50").then(showJobs).catch(function () {});
    }
  }

  function track(id, name) {
    var input = $(id);
    input.addEventListener("focus", function () { editing[name] = true; });
    input.addEventListener("blur", function () { editing[name] = false; });
  }

  track("width-input", "width");
  track("rate-input", "rate");

  $("width-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var width = parseInt($("width-input").value, 10);
    editing.width = false;
    act("width", {width: width}, function (a) { return "width is now " + a.width; });
  });
  $("rate-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var text = $("rate-input").value.trim();
    editing.rate = false;
    act("rate", {rate: text === "" ? null : text}, function (a) {
      return "rate is now " + (a.rate === null ? "unlimited" : a.rate + "/s");
    });
  });
  $("cancel-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var id = $("cancel-input").value.trim();
    if (id) {
      act("jobs/" + encodeURIComponent(id) + "/cancel", {}, function () {
        return "job " + id + " cancelled";
      });
    }
  });
  $("pause").addEventListener("click", function () {
    act("pause", {}, function () { return "paused"; });
  });
  $("resume").addEventListener("click", function () {
    act("resume", {}, function () { return "resumed"; });
  });
  $("stop").addEventListener("click", function () {
    if (window.confirm("Stop the run? Underway jobs finish; the rest is kept.")) {
      act("stop", {}, function () { return "stopping"; });
    }
  });

  var n = 0;
  tick(n);
  window.setInterval(function () { n += 1; tick(n); }, 1000);
})();
