"""Prometheus ``/metrics`` for a queue or a run, with ``prometheus_client``.

Nothing is counted through ``prometheus_client`` on the hot path: the
admin's :class:`~fetchq.admin.watch.Watch` keeps plain counters, and a
custom collector turns them into metric families only when a scraper asks.
Lane labels are bounded (the first busy lanes, then ``other``), so a crawl
of 100,000 hosts exports a few dozen series, not 100,000.

=========================================  =====================================
``fetchq_jobs_total{kind,outcome}``        attempts' ends by outcome (ok,
                                           failed, cancelled, retried, throttled)
``fetchq_attempts_total{kind}``            attempts launched
``fetchq_retries_total{kind}``             attempts that will be tried again
``fetchq_throttled_total{kind,lane}``      throttled attempts (429, 20429, ...)
``fetchq_job_latency_seconds{kind}``       histogram of attempts' latency
``fetchq_bytes_total{kind}``               bytes of successful results
``fetchq_width``, ``fetchq_rate``          the limits now (rate 0: unlimited)
``fetchq_in_flight``, ``fetchq_pending``   jobs underway, waiting
``fetchq_holds``                           lanes held now (queue-wide hold: 1)
``fetchq_paused``                          1 while paused
``fetchq_controller_decisions_total``      the controller's decisions by reason
``fetchq_run_rows{state}``                 a run's rows (pending, claimed, done)
=========================================  =====================================
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from fetchq.admin.watch import LATENCY_BUCKETS

__all__ = ["CONTENT_TYPE", "FetchqCollector", "render"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :func:`render`'s text."""

_OUTCOMES = ("ok", "failed", "cancelled", "retried", "throttled")


class FetchqCollector(Collector):
    """Metric families from a :class:`~fetchq.admin.controls.Controls`
    (its ``watch`` and ``gauges()``).

    Args:
        controls: what to report on.
        kind: the ``kind`` label (``fetch``, ``sms``, ``api``, ``queue``).
    """

    def __init__(self, controls: Any, kind: str) -> None:
        self.controls = controls
        self.kind = kind

    def collect(self) -> Iterator[Metric]:
        watch = self.controls.watch
        kind = self.kind
        jobs = CounterMetricFamily(
            "fetchq_jobs", "Attempts ended, by outcome.", labels=["kind", "outcome"]
        )
        for outcome in _OUTCOMES:
            jobs.add_metric([kind, outcome], watch.outcomes[outcome])
        yield jobs
        yield _counter("fetchq_attempts", "Attempts launched.", kind, watch.attempts)
        yield _counter(
            "fetchq_retries", "Attempts that will be tried again.", kind, watch.retries
        )
        throttled = CounterMetricFamily(
            "fetchq_throttled",
            "Throttled attempts (429, 20429, ...) by lane (busiest lanes, then other).",
            labels=["kind", "lane"],
        )
        for lane, n in watch.throttled.series():
            throttled.add_metric([kind, lane], n)
        yield throttled
        latency = HistogramMetricFamily(
            "fetchq_job_latency_seconds",
            "Latency of attempts.",
            labels=["kind"],
        )
        buckets = []
        seen = 0
        for bound, n in zip(LATENCY_BUCKETS, watch.latency_buckets, strict=False):
            seen += n
            buckets.append((_le(bound), seen))
        buckets.append(("+Inf", watch.latency_count))
        latency.add_metric([kind], buckets, watch.latency_sum)
        yield latency
        yield _counter(
            "fetchq_bytes", "Bytes of successful results.", kind, watch.bytes
        )
        decisions = CounterMetricFamily(
            "fetchq_controller_decisions",
            "The adaptive controller's decisions, by reason.",
            labels=["reason"],
        )
        for reason, n in sorted(watch.decisions.items()):
            decisions.add_metric([reason], n)
        yield decisions
        gauges = self.controls.gauges()
        for name, text in (
            ("width", "Most jobs underway at once."),
            ("rate", "Most launches per second (0: unlimited)."),
            ("in_flight", "Jobs underway now."),
            ("pending", "Jobs waiting."),
            ("holds", "Lanes held now (a hold of the whole queue counts 1)."),
            ("paused", "1 while paused."),
        ):
            value = gauges.get(name)
            yield GaugeMetricFamily(f"fetchq_{name}", text, value=float(value or 0))
        rows = gauges.get("rows")
        if rows:
            family = GaugeMetricFamily(
                "fetchq_run_rows", "The run's rows by state.", labels=["state"]
            )
            for state, n in rows.items():
                family.add_metric([state], n)
            yield family


def _counter(name: str, text: str, kind: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, text, labels=["kind"])
    family.add_metric([kind], value)
    return family


def _le(bound: float) -> str:
    return repr(float(bound))


def registry_for(controls: Any, kind: str) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) with the
    collector for ``controls``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FetchqCollector(controls, kind))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format of everything in ``registry``."""
    return generate_latest(registry)
