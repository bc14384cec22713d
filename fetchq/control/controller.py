"""Controllers: set a queue's width, and its pace, from its own events.

A controller is anything with ``attach(queue)`` and ``detach()``
(:class:`Controller`).  :class:`FixedWidth` is the trivial one.
:class:`AdaptiveController` observes the queue's events and, per *scope* (the
whole queue, or each lane with ``per_lane=True``):

1. gathers a window of outcomes: latency samples, drops, most jobs underway.
   A window's latency is the median of its samples (as Envoy's filter uses
   a percentile), so a few slow pages do not read as overload;
2. measures the latency *baseline* by probing: at the start and every
   ``probe_every`` seconds it lowers the width to ``probe_width`` until
   ``probe_samples`` attempts launched during the probe have succeeded, and
   takes their median (as Envoy's adaptive concurrency filter re-measures its
   minimum RTT).  Between probes the baseline may fall, never rise, so a
   sustained overload cannot drag it upward;
3. asks its :class:`~fetchq.control.limits.Limit` algorithm for the next
   limit, every ``interval`` seconds once the window holds ``min_samples``
   outcomes (or has lasted ``max_window``), and at once on a drop;
4. paces launches when width alone cannot help.  A drop first cuts the width
   (never below ``min_width``, and straight down to the *minimum useful
   width*: what the recent successful throughput needs by Little's law, plus
   one).  A further drop at that width means the remote side limits requests
   per second, not requests at once: the controller then sets a launch rate
   (the queue's, or the lane's) a little under the successful throughput,
   lowers it by ``rate_backoff`` on each later drop, raises it additively by
   ``rate_increase`` of the last cut rate per window with successes and no
   drop (and by 25% per window once ``calm_seconds`` pass without a drop),
   and gives the pace back once the width binds before the rate does.  A
   pace is only set or cut while attempts launched since the cut before last
   still succeed: in an outage, where everything fails, a pace would learn
   nothing, and the retry backoff already spaces the attempts;
5. announces each decision as a :class:`~fetchq.events.ControlDecision`
   through ``queue.announce()``.

Only drops from attempts launched after the last cut trigger a new cut, so a
burst of failures from one overload counts once (TCP's one decrease per
round trip).  Cancelled jobs, and attempts the classifier ignores, move
nothing.  The width grows only while the queue uses at least half of it.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import TYPE_CHECKING, Any, Protocol

from fetchq._validate import check_width
from fetchq.control.limits import Default, Limit, Window
from fetchq.control.signals import Classifier, Signal, classify
from fetchq.events import ControlDecision, Event, JobFinished, JobLaunched

if TYPE_CHECKING:
    from collections.abc import Callable

    from fetchq.queue import DelayedCallLike, ResizableDispatchQueue

__all__ = ["AdaptiveController", "Controller", "FixedWidth"]

# A window keeps at most this many latencies for its median.
_MAX_WINDOW_SAMPLES = 4096

_SAMPLE = Signal.SAMPLE
_DROP = Signal.DROP
_THROTTLE = Signal.THROTTLE


class Controller(Protocol):
    """Steers a queue while attached."""

    def attach(self, queue: ResizableDispatchQueue) -> None:
        """Start steering ``queue``."""
        ...

    def detach(self) -> None:
        """Stop steering; the queue keeps its last width."""
        ...


class FixedWidth:
    """A fixed width: the controller for users who know their number."""

    def __init__(self, width: int) -> None:
        self.width = check_width(width)

    def attach(self, queue: ResizableDispatchQueue) -> None:
        queue.setWidth(self.width)

    def detach(self) -> None:
        pass


class _Probe:
    __slots__ = ("latencies", "started")

    def __init__(self, started: float) -> None:
        self.started = started
        self.latencies: list[float] = []


class _Scope:
    """The controller's state for the queue (key None) or one lane."""

    __slots__ = (
        "applied_rate",
        "baseline",
        "cap_rate",
        "cut_rate",
        "cutting",
        "drops",
        "fresh",
        "fresh_ok",
        "goodput",
        "key",
        "last_cut",
        "last_seen",
        "latencies",
        "latency",
        "limit",
        "next_probe",
        "opened",
        "peak",
        "prev_ok",
        "probe",
        "rate",
        "samples",
        "throttles",
        "underway",
        "urgent",
        "width",
    )

    def __init__(self, key: Any, limit: float, width: int, now: float) -> None:
        self.key = key
        self.limit = limit
        self.width = width  # as last set on the queue
        self.rate: float | None = None  # our pace; None = not paced
        self.cap_rate: float | None = None  # the rate found on attach
        self.applied_rate: float | None = None  # as last set on the queue
        self.cut_rate = 0.0
        self.baseline: float | None = None
        self.probe: _Probe | None = None
        self.next_probe = now
        self.goodput: float | None = None  # successes per second (smoothed)
        self.latency: float | None = None  # seconds (smoothed)
        self.underway = 0
        self.peak = 0
        self.samples = 0
        self.latencies: list[float] = []
        self.drops = 0
        self.throttles = 0
        self.fresh = 0  # drops of attempts launched since the last cut
        self.fresh_ok = 0  # ... and successes
        self.prev_ok = 0  # successes between the last two cuts
        self.cutting = False  # the last decision was a cut for a drop
        self.last_cut = -math.inf
        self.opened = now
        self.last_seen = now
        self.urgent = False


class AdaptiveController:
    """Sets a queue's width (and, when needed, its launch rate) from latency,
    drops and throttles.  See the module docstring for how.

    Args:
        algorithm: the :class:`~fetchq.control.limits.Limit` (default:
            :class:`~fetchq.control.limits.Default`).
        min_width: the width never goes below this (>= 1).
        max_width: ... nor above this.
        initial: the starting limit (default: the queue's width, clamped).
        per_lane: steer each lane's width and rate instead of the queue's.
            The queue-wide width stays as set (a cap over all lanes) and
            jobs without a key are not steered.
        pace: whether to pace launches when drops persist at the minimum
            useful width.
        classify: turns a finished attempt into a
            :class:`~fetchq.control.signals.Signal`; adapters pass their own.
        interval: seconds between decisions (a decision also waits for
            ``min_samples`` outcomes, up to ``max_window`` seconds).
        min_samples: outcomes a window needs before a decision.
        max_window: a window longer than this is decided whatever it holds.
        probe_every: seconds between baseline probes (jittered by 10%).
        probe_width: the width while probing.
        probe_samples: successes a probe needs.
        rate_backoff: the pace is multiplied by this on each drop.
        rate_increase: fraction of the last cut rate added per calm window.
        calm_seconds: drop-free seconds after which the pace grows by 25%
            per window.
        min_rate: the pace never goes below this many launches per second.
        idle_after: a lane's state is dropped (and its width and rate given
            back to the queue's defaults) after this many idle seconds.
        rng: random source for the probe jitter.
    """

    def __init__(
        self,
        algorithm: Limit | None = None,
        *,
        min_width: int = 1,
        max_width: int = 1000,
        initial: int | None = None,
        per_lane: bool = False,
        pace: bool = True,
        classify: Classifier = classify,
        interval: float = 0.1,
        min_samples: int = 10,
        max_window: float = 1.0,
        probe_every: float = 30.0,
        probe_width: int = 2,
        probe_samples: int = 10,
        rate_backoff: float = 0.85,
        rate_increase: float = 0.02,
        calm_seconds: float = 2.0,
        min_rate: float = 0.1,
        idle_after: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if check_width(min_width, "min_width") < 1:
            raise ValueError(f"min_width must be >= 1, not {min_width!r}")
        if check_width(max_width, "max_width") < min_width:
            raise ValueError(
                f"max_width ({max_width}) must be >= min_width ({min_width})"
            )
        if initial is not None:
            check_width(initial, "initial")
        check_width(probe_width, "probe_width")
        for name, value in (
            ("interval", interval),
            ("max_window", max_window),
            ("probe_every", probe_every),
            ("min_rate", min_rate),
            ("idle_after", idle_after),
            ("calm_seconds", calm_seconds),
        ):
            if isinstance(value, bool) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a number > 0, not {value!r}")
        if not 0 < rate_backoff < 1:
            raise ValueError(f"rate_backoff must be in (0, 1), not {rate_backoff!r}")
        if not 0 < rate_increase <= 1:
            raise ValueError(f"rate_increase must be in (0, 1], not {rate_increase!r}")
        self.algorithm: Limit = Default() if algorithm is None else algorithm
        self.min_width = min_width
        self.max_width = max_width
        self.initial = initial
        self.per_lane = per_lane
        self.pace = pace
        self._classify = classify
        self.interval = interval
        self.min_samples = max(1, min_samples)
        self.max_window = max_window
        self.probe_every = probe_every
        self.probe_width = max(min_width, probe_width)
        self.probe_samples = max(1, probe_samples)
        self.rate_backoff = rate_backoff
        self.rate_increase = rate_increase
        self.calm_seconds = calm_seconds
        self.min_rate = min_rate
        self.idle_after = idle_after
        self._rng = random.Random() if rng is None else rng

        self._queue: ResizableDispatchQueue | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._timer: DelayedCallLike | None = None
        self._urgent: list[DelayedCallLike] = []
        self._global: _Scope | None = None
        self._lanes: dict[Any, _Scope] = {}

    # ------------------------------------------------------------------
    # Attaching

    @property
    def classifier(self) -> Classifier:
        """How the controller reads a finished attempt (a
        :data:`~fetchq.control.signals.Classifier`)."""
        return self._classify

    @property
    def attached(self) -> bool:
        """Whether the controller is steering a queue."""
        return self._queue is not None

    def attach(self, queue: ResizableDispatchQueue) -> None:
        """Start steering ``queue`` (a controller steers one queue at a time).

        The width starts at ``initial`` (else the queue's width), clamped to
        ``min_width``/``max_width``; a probe for the baseline starts at once.
        """
        if self._queue is not None:
            raise RuntimeError("this controller is already attached to a queue")
        self._queue = queue
        now = queue.clock.seconds()
        if not self.per_lane:
            start = queue.width if self.initial is None else self.initial
            self._global = self._new_scope(None, start, queue.rate, now)
            self._decide(self._global, now, "probe")
        self._unsubscribe = queue.subscribe(self._observe)
        self._timer = queue.clock.callLater(self.interval, self._tick)

    def detach(self) -> None:
        """Stop steering.  The widths stay as last set; launch rates the
        controller set go back to what they were on attach (lanes: to the
        queue's lane default)."""
        queue = self._queue
        if queue is None:
            return
        assert self._unsubscribe is not None
        self._unsubscribe()
        for call in (self._timer, *self._urgent):
            if call is not None and call.active():
                call.cancel()
        self._timer = None
        self._urgent = []
        scopes = self._scopes()
        self._queue = None
        for scope in scopes:
            if scope.rate is not None:
                self._set_rate(queue, scope, scope.cap_rate)
        self._global = None
        self._lanes = {}

    def scopes(self) -> list[ControlDecision]:
        """The current state of every scope, as decisions (for admin views)."""
        queue = self._queue
        if queue is None:
            return []
        now = queue.clock.seconds()
        return [self._decision(s, now, "state") for s in self._scopes()]

    def _scopes(self) -> list[_Scope]:
        """The queue-wide scope (unless per lane) and every lane's."""
        lanes = list(self._lanes.values())
        return lanes if self._global is None else [self._global, *lanes]

    # ------------------------------------------------------------------
    # Observing

    def _new_scope(
        self, key: Any, start: int | None, rate: float | None, now: float
    ) -> _Scope:
        if start is None:
            start = self.max_width
        limit = float(min(self.max_width, max(self.min_width, start)))
        scope = _Scope(key, limit, -1, now)
        scope.cap_rate = scope.applied_rate = rate
        return scope

    def _scope(self, key: Any) -> _Scope | None:
        if not self.per_lane:
            return self._global
        if key is None:
            return None
        scope = self._lanes.get(key)
        if scope is None:
            queue = self._queue
            assert queue is not None
            now = queue.clock.seconds()
            start = self.initial or queue.lane_width or self.min_width
            scope = self._lanes[key] = self._new_scope(key, start, queue.lane_rate, now)
            # Not from inside the queue's event delivery: on the next turn.
            scope.urgent = True
            self._urgent.append(queue.clock.callLater(0, self._start, scope))
        return scope

    def _observe(self, event: Event) -> None:
        kind = type(event)
        if kind is JobLaunched:
            assert isinstance(event, JobLaunched)
            scope = self._scope(event.job.key)
            if scope is None:
                return
            scope.underway += 1
            if scope.underway > scope.peak:
                scope.peak = scope.underway
        elif kind is JobFinished:
            assert isinstance(event, JobFinished)
            latency = event.latency
            if latency is None:
                return  # cancelled before it launched
            scope = self._scope(event.job.key)
            if scope is None:
                return
            launched = event.time - latency
            scope.last_seen = event.time
            if scope.underway > 0:
                scope.underway -= 1
            signal = self._classify(event)
            if signal is _SAMPLE:
                scope.samples += 1
                if len(scope.latencies) < _MAX_WINDOW_SAMPLES:
                    scope.latencies.append(latency)
                if launched >= scope.last_cut:
                    scope.fresh_ok += 1
                probe = scope.probe
                if probe is not None and launched >= probe.started:
                    probe.latencies.append(latency)
            elif signal is _DROP or signal is _THROTTLE:
                scope.drops += 1
                if signal is _THROTTLE:
                    scope.throttles += 1
                if launched >= scope.last_cut:
                    scope.fresh += 1
                    if not scope.urgent and self._queue is not None:
                        scope.urgent = True
                        call = self._queue.clock.callLater(0, self._drop_now, scope)
                        self._urgent.append(call)

    # ------------------------------------------------------------------
    # Deciding

    def _start(self, scope: _Scope) -> None:
        queue = self._queue
        if queue is not None and self._lanes.get(scope.key) is scope:
            self._decide(scope, queue.clock.seconds(), "probe")

    def _drop_now(self, scope: _Scope) -> None:
        self._urgent = [c for c in self._urgent if c.active()]
        queue = self._queue
        if queue is None or not scope.urgent:
            return
        self._decide(scope, queue.clock.seconds(), "drop")

    def _tick(self) -> None:
        queue = self._queue
        if queue is None:
            return
        now = queue.clock.seconds()
        for scope in self._scopes():
            probe = scope.probe
            if probe is not None:
                if len(
                    probe.latencies
                ) >= self.probe_samples or now - probe.started >= max(
                    self.max_window, 10 * self.interval
                ):
                    self._decide(scope, now, "baseline")
                continue
            if now >= scope.next_probe and scope.rate is None:
                self._decide(scope, now, "probe")
                continue
            outcomes = scope.samples + scope.drops
            age = now - scope.opened
            if (
                outcomes >= self.min_samples
                or (outcomes and age >= self.max_window)
                or scope.rate is not None
            ):
                self._decide(scope, now, "window")
            elif (
                scope.key is not None
                and scope.underway == 0
                and now - scope.last_seen >= self.idle_after
            ):
                del self._lanes[scope.key]
                queue.reset_lane(scope.key)
        self._timer = queue.clock.callLater(self.interval, self._tick)

    def _decide(self, scope: _Scope, now: float, why: str) -> None:
        """One decision for ``scope``: ``why`` is "drop", "window", "probe"
        or "baseline"."""
        queue = self._queue
        assert queue is not None
        duration = now - scope.opened
        samples = scope.samples
        latency = statistics.median(scope.latencies) if scope.latencies else None
        window = Window(
            duration, samples, latency, scope.drops, max(scope.peak, scope.underway)
        )
        throttles = scope.throttles
        self._smooth(scope, window)
        reason = why
        gradient: float | None = None
        if why == "drop":
            reason = self._on_drop(scope, now)
        elif why == "probe":
            scope.probe = _Probe(now)
            reason = "probe"
        elif why == "baseline":
            probe = scope.probe
            assert probe is not None
            if probe.latencies:
                scope.baseline = statistics.median(probe.latencies)
            scope.probe = None
            jitter = 1 + 0.1 * (2 * self._rng.random() - 1)
            scope.next_probe = now + self.probe_every * jitter
            reason = "baseline"
        elif why == "window":
            if not window.drops:
                scope.cutting = False
            if (
                latency is not None
                and scope.baseline is not None
                and samples >= self.min_samples
                and scope.probe is None
            ):
                scope.baseline = min(scope.baseline, latency)
            step = self.algorithm.on_window(scope.limit, window, scope.baseline)
            scope.limit = self._clamp(step.limit)
            reason, gradient = step.reason, step.gradient
            if scope.rate is not None:
                reason = self._relax_pace(scope, window, now)
        scope.urgent = False
        scope.samples = 0
        scope.latencies = []
        scope.drops = 0
        scope.throttles = 0
        scope.fresh = 0
        scope.peak = scope.underway
        scope.opened = now
        self._apply(queue, scope)
        queue.announce(self._decision(scope, now, reason, window, throttles, gradient))

    def _smooth(self, scope: _Scope, window: Window) -> None:
        """Fold the window into the smoothed goodput and latency (a time
        constant of one second)."""
        if window.duration <= 0:
            return
        weight = 1 - math.exp(-window.duration)
        rate = window.samples / window.duration
        if scope.goodput is None:
            scope.goodput = rate
        else:
            scope.goodput += weight * (rate - scope.goodput)
        if window.latency is not None:
            if scope.latency is None:
                scope.latency = window.latency
            else:
                scope.latency += max(weight, 0.1) * (window.latency - scope.latency)

    def _useful_width(self, scope: _Scope) -> int:
        """The least width that carries the recent successful throughput
        (Little's law), plus one."""
        if scope.goodput is None or scope.latency is None:
            return self.max_width
        return max(self.min_width, math.ceil(scope.goodput * scope.latency) + 1)

    def _on_drop(self, scope: _Scope, now: float) -> str:
        # Successes of attempts launched since the cut before last (the first
        # cut has none before it): none means an outage, not a quota.
        still_succeeding = scope.fresh_ok + scope.prev_ok > 0
        scope.prev_ok = scope.fresh_ok if scope.last_cut > -math.inf else 0
        scope.last_cut = now
        scope.fresh_ok = 0
        useful = self._useful_width(scope)
        # Drops persist at the floor: the last decision cut to it already.
        persist = scope.cutting and scope.limit <= useful
        scope.cutting = True
        limit = self.algorithm.on_drop(scope.limit).limit
        if self.pace:
            limit = min(limit, useful)
        scope.limit = self._clamp(limit)
        paced = scope.rate is not None  # then the pace binds, not the width
        if not (self.pace and (persist or paced) and still_succeeding):
            return "drop"
        # Drops persist at the least useful width: pace launches.
        if scope.rate is None:
            goodput = scope.goodput or self.min_rate
            rate = goodput * self.rate_backoff
        else:
            rate = scope.rate * self.rate_backoff
        if scope.cap_rate is not None:
            rate = min(rate, scope.cap_rate)
        scope.rate = scope.cut_rate = max(self.min_rate, rate)
        scope.probe = None  # a probe cannot measure anything while paced
        return "pace"

    def _relax_pace(self, scope: _Scope, window: Window, now: float) -> str:
        """A window without a new drop while paced: raise the pace, or give
        it back."""
        assert scope.rate is not None
        if now - scope.last_cut >= self.calm_seconds:
            rate = scope.rate * 1.25
        elif window.samples and not window.drops:
            rate = scope.rate + self.rate_increase * scope.cut_rate
        else:
            return "paced"
        latency = scope.latency
        cap = scope.cap_rate
        if (cap is not None and rate >= cap) or (
            latency is not None and rate * latency >= scope.limit
        ):
            scope.rate = None  # the width binds before the pace would
            scope.next_probe = 0.0
            return "unpace"
        scope.rate = rate
        return "pace-up"

    def _clamp(self, limit: float) -> float:
        return min(float(self.max_width), max(float(self.min_width), limit))

    def _apply(self, queue: ResizableDispatchQueue, scope: _Scope) -> None:
        width = round(scope.limit)
        if scope.probe is not None:
            width = min(width, self.probe_width)
        if width != scope.width:
            scope.width = width
            if scope.key is None:
                queue.setWidth(width)
            else:
                queue.set_lane_width(scope.key, width)
        rate = scope.rate if scope.rate is not None else scope.cap_rate
        if rate != scope.applied_rate:
            scope.applied_rate = rate
            self._set_rate(queue, scope, rate)

    @staticmethod
    def _set_rate(
        queue: ResizableDispatchQueue, scope: _Scope, rate: float | None
    ) -> None:
        if scope.key is None:
            queue.set_rate(rate)
        else:
            queue.set_lane_rate(scope.key, rate)

    def _decision(
        self,
        scope: _Scope,
        now: float,
        reason: str,
        window: Window | None = None,
        throttles: int = 0,
        gradient: float | None = None,
    ) -> ControlDecision:
        return ControlDecision(
            controller=self.algorithm.name,
            key=scope.key,
            width=scope.width,
            rate=scope.rate,
            in_flight=window.in_flight if window else scope.underway,
            samples=window.samples if window else 0,
            latency=window.latency if window else scope.latency,
            baseline=scope.baseline,
            gradient=gradient,
            drops=window.drops if window else 0,
            throttles=throttles,
            reason=reason,
            time=now,
        )
