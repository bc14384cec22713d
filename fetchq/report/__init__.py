"""The run report: a picture of a run, not a log.

Two parts, usable apart:

- :class:`Timeline` (:mod:`fetchq.report.timeline`), a queue observer that
  keeps the run's history in time buckets (launches, outcomes, throughput,
  latency percentiles, jobs in flight, width and rate, the adaptive
  controller's decisions, drops and throttles) in bounded memory, and gives
  it back as a plain dict with :meth:`Timeline.to_json`.
- :func:`write_report` (:mod:`fetchq.report.html`), which writes one
  self-contained HTML file: three charts drawn by uPlot (bundled, see
  ``assets/README.md``) and the summary tables.  It makes no network request.

From a run::

    from fetchq.report import Timeline, write_report

    timeline = Timeline(queue.clock, interval=1.0)
    timeline.start(queue)          # time zero, the initial width and rate
    queue.subscribe(timeline)      # any order among observers: each sees
    stats = RunStats(queue.clock)  # every event, controller decisions too
    queue.subscribe(stats)
    ...                            # run; the controller calls queue.announce()
    write_report(
        "report.html",
        timeline,
        {"Run": stats.summary()},  # or rows: {"Outcomes": [("ok", 5), ...]}
        title="fetchq run: fetch-urls.yaml",
        meta={"recipe": "recipes/fetch-urls.yaml", "started": "...",
              "elapsed": "15.2s", "version": fetchq.__version__},
    )

Write the report after the run has ended (its last bucket is then the final,
usually partial, one).  ``render_report()`` returns the HTML as a string, and
``assets/charts.js`` (``FetchqCharts.render(timeline, targets)``) draws the
same charts from ``to_json()`` for a live page.
"""

from __future__ import annotations

from fetchq.report.html import Summary, render_report, write_report
from fetchq.report.timeline import Timeline

__all__ = ["Summary", "Timeline", "render_report", "write_report"]
