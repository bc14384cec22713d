"""The run report: a picture of a run, not a log.

Three parts, usable apart:

- :class:`Timeline` (:mod:`fetchq.report.timeline`), a queue observer that
  keeps the run's history in time buckets (launches, outcomes, throughput,
  latency percentiles, jobs in flight, width and rate, the adaptive
  controller's decisions, drops and throttles, bytes) in bounded memory, and
  gives it back as a plain dict with :meth:`Timeline.to_json`.
- :mod:`fetchq.report.history`: a run's segments (the run and each resume;
  on Redis each worker) kept in its state's meta by :class:`RunHistory`,
  each with its :meth:`~fetchq.progress.RunStats.to_json` figures and its
  timeline, bounded; :func:`report_data` lays their timelines end to end
  and adds their figures up, for a report of the whole run.
- :func:`write_report` (:mod:`fetchq.report.html`), which writes one
  self-contained HTML file: five charts drawn by uPlot (bundled, see
  ``assets/README.md``) and the tables (status codes and errors with
  examples, lanes, attempts per job, the run's history, the controller's
  decisions).  It makes no network request.

From a run (``fetchq run`` does this, and keeps the history itself)::

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
        title="fetchq run: fetch-urls.yaml",
        meta={"recipe": "recipes/fetch-urls.yaml", "started": "...",
              "elapsed": "15.2s", "version": fetchq.__version__},
        stats=stats.to_json(),     # tiles and tables; or text sections as
    )                              # the summary: {"Run": stats.summary()}

Write the report after the run has ended (its last bucket is then the final,
usually partial, one).  ``render_report()`` returns the HTML as a string, and
``assets/charts.js`` (``FetchqCharts.render(timeline, targets)``) draws the
same charts from ``to_json()`` for a live page.
"""

from __future__ import annotations

from fetchq.report.history import RunHistory, report_data
from fetchq.report.html import Summary, render_report, write_report
from fetchq.report.timeline import Timeline

__all__ = [
    "RunHistory",
    "Summary",
    "Timeline",
    "render_report",
    "report_data",
    "write_report",
]
