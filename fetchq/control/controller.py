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
   outcomes (or has lasted ``max_window``), and at once on a drop.  Until
   a window shows a queue (a gradient under 0.9: a wider queue adds a few
   percent of the client's own overhead to every answer) or a drop, a width in full
   use grows by at least a quarter per window (a gentler TCP slow start), so
   a run started at width 4 reaches a server's capacity in a few windows;
4. paces launches when width alone cannot help.  A drop first cuts the width
   (never below ``min_width``, and straight down to the *minimum useful
   width*: what the recent successful throughput needs by Little's law, plus
   one).  A further drop at that width, or a drop while a launch rate binds
   (a lane's configured rate, a pace already set), means the remote side
   limits requests per second, not requests at once.  The controller then
   remembers where it was refused (the *ceiling*: the successful throughput,
   or the launch rate in force, whichever is lower), sets a launch rate (the
   queue's, or the lane's) ``rate_backoff`` under it, raises that additively
   by ``rate_increase`` of the cut rate per window with successes and no
   drop up to a *plateau* a ``margin`` under the ceiling, and holds it
   there.  A refusal on the plateau doubles the margin (up to
   ``max_margin``): the limit is strict and the arrivals jitter.  Each
   calm spell on the plateau (``calm_seconds`` and ``calm_samples``
   successes without a drop) halves it again, and once it is small, the
   pace probes beyond the ceiling (by 25% per window, so a lifted quota is
   found) and is given back once the width binds before the rate does.  A
   pace is only set or cut while attempts launched since the cut before
   last still succeed: in an outage, where everything fails, a pace would
   learn nothing, and the retry backoff already spaces the attempts.  While
   it paces, a throttle whose delay the remote side did not give (a 429
   without Retry-After) holds its lane for one launch at the pace in force
   rather than the adapter's guess (``queue.guessed_hold``);
5. discounts what the client itself adds.  At each tick it reads the
   client's load (:mod:`fetchq.control.load`): how late its own timer fired
   (the event loop's lag) and its thread's CPU share.  A window's latency
   is judged less the median lag it had beyond the lag while the baseline
   was measured, so a busy client is not taken for a congested server.
   While the client is the bottleneck (it uses 90% of a core, or answers
   wait for it at least a quarter of their latency and ``client_lag``) the
   width does not grow (reason ``client-bound``): more requests in flight
   would only wait longer for the client;
6. announces each decision as a :class:`~fetchq.events.ControlDecision`
   through ``queue.announce()``, with the window's lag and CPU share.

Only drops from attempts launched after the last cut trigger a new cut, so a
burst of failures from one overload counts once (TCP's one decrease per
round trip).  Cancelled jobs, and attempts the classifier ignores, move
nothing.  The width grows only while the queue uses at least half of it.
"""

from __future__ import annotations

import collections
import math
import random
import statistics
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from fetchq._validate import check_width
from fetchq.control.limits import Default, Limit, Window
from fetchq.control.load import ClientLoad, ProcessLoad
from fetchq.control.signals import Classifier, Signal, classify
from fetchq.events import ControlDecision, Event, JobFinished, JobLaunched

if TYPE_CHECKING:
    from collections.abc import Callable

    from fetchq.queue import DelayedCallLike, ResizableDispatchQueue

__all__ = ["AdaptiveController", "Controller", "FixedWidth"]

# A window keeps at most this many latencies for its median.
_MAX_WINDOW_SAMPLES = 4096
# ... and at most this many readings of the loop's lag (ten per interval).
_MAX_LAGS = 3000
# The client is the bottleneck at this share of a core, or while the loop's
# lag is at least this share of the latency (and at least client_lag).
_CPU_BOUND = 0.9
_LAG_SHARE = 0.25
# Every _STEP_EVERY seconds (jittered) a scope whose latency is 5% above its
# floor steps down to 3/4 of its width (from _STEP_FROM) for one probe: if
# the latency stays at _KNEE of what it was or more, it was no queue at the
# server, and serves as the floor the latency is judged against.
_STEP_EVERY = 10.0
# Until a window shows a queue (gradient under _START_GRADIENT) or a drop, a
# width in full use grows by a quarter per window (TCP's slow start, gentler).
# Not 0.95: as the width grows the client's own overhead adds 5-10% to every
# answer before the server queues anything (43-49 ms against a 43 ms
# baseline, measured), which ended the start in its first window.
_START_GRADIENT = 0.9
_START_GROWTH = 1.25
_STEP_FIRST = 3.0
_STEP_FROM = 8
_KNEE = 0.93

# A lane keeps the launch spacing of this many of its last successes, and
# of at most this many attempts underway.
_ACCEPTED_GAPS = 20
_MAX_SPACINGS = 1000
# While the client is the bottleneck, a quarter wider (after each kept
# trial twice the step, up to twice the limit) is tried for
# _TRIAL_SPAN seconds (after _TRIAL_SETTLE) and kept if successes per second
# rose by _TRIAL_GAIN (and by _TRIAL_NOISE / sqrt(successes counted), beyond
# chance); latency alone then shrinks it to no less than
# _TRIAL_KEEP of it.  A trial that found nothing doubles the wait before the
# next (up to _TRIAL_MAX_WAIT).
_TRIAL_SPAN = 1.0
_TRIAL_SETTLE = 0.25
_TRIAL_GAIN = 1.08
_TRIAL_NOISE = 2.0
_TRIAL_KEEP = 0.9
_TRIAL_MAX_WAIT = 32.0
# A pace this close under its plateau goes the rest of the way.
_NEAR = 0.01

_SAMPLE = Signal.SAMPLE
_DROP = Signal.DROP
_THROTTLE = Signal.THROTTLE


def _discount(
    latency: float | None, lag: float | None, base_lag: float
) -> float | None:
    """A latency less the client's lag beyond what it was when the baseline
    was measured (never below half of it: a lag that large says the client
    is the bottleneck, not how fast the server is)."""
    if latency is None or lag is None or lag <= base_lag:
        return latency
    return max(latency - (lag - base_lag), latency / 2)


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
    """A baseline probe (at ``probe_width``), or a step down (to 3/4 of the
    width, ``before`` being the latency it is compared with)."""

    __slots__ = ("before", "latencies", "readings", "started")

    def __init__(self, started: float, readings: int, before: float | None = None):
        self.started = started
        self.readings = readings  # the load readings before it began
        self.before = before
        self.latencies: list[float] = []


class _Trial:
    """A wider limit tried while the client was the bottleneck: kept if the
    successes per second rose with it."""

    __slots__ = ("before", "from_limit", "started", "to_limit")

    def __init__(
        self, started: float, from_limit: float, to_limit: float, before: float
    ) -> None:
        self.started = started
        self.from_limit = from_limit
        self.to_limit = to_limit
        self.before = before  # successes per second before it


class _Scope:
    """The controller's state for the queue (key None) or one lane."""

    __slots__ = (
        "accepted_gaps",
        "applied_rate",
        "base_lag",
        "baseline",
        "calm_ok",
        "calm_since",
        "cap_rate",
        "ceiling",
        "cut_launches",
        "cut_rate",
        "cutting",
        "drops",
        "episode",
        "first",
        "fresh",
        "fresh_ok",
        "gap",
        "good",
        "goodput",
        "judged",
        "key",
        "knee",
        "last_cut",
        "last_launch",
        "last_seen",
        "latencies",
        "latency",
        "launches",
        "limit",
        "margin",
        "marks",
        "next_probe",
        "next_step",
        "oks",
        "opened",
        "peak",
        "prev_ok",
        "probe",
        "probe_oks",
        "probing",
        "quiet",
        "rate",
        "refused_gap",
        "samples",
        "spacing",
        "starting",
        "throttles",
        "tput",
        "tput_floor",
        "tput_marks",
        "tput_next",
        "tput_step",
        "tput_wait",
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
        self.base_lag = 0.0  # the client's lag when the baseline was measured
        self.judged: float | None = None  # the last window's latency, judged
        self.knee: float | None = None  # latency that a step down kept
        self.starting = True  # no window has shown a queue or a drop yet
        self.next_step = now + _STEP_FIRST
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
        self.ceiling: float | None = None  # the launch rate refused at
        self.margin = 0.0  # the plateau is this fraction under the ceiling
        self.good: float | None = None  # a pace that held for a calm spell
        self.probing = 0  # windows probing beyond the ceiling (0: not)
        self.probe_oks = 0  # successes (``oks``) when the probe last stepped
        self.quiet = 1  # calm spells before a probe: doubles when one finds
        # nothing
        self.calm_since = now  # the plateau's calm spell began
        self.calm_ok = 0  # ... and successes since
        self.last_launch: float | None = None
        self.launches = 0  # attempts launched
        # A rate-limited lane's first attempt (its job), until its answer:
        # the next launch waits an interval after that answer.
        self.first: object = None
        self.cut_launches = 0  # ... by the last cut
        self.oks = 0  # ... and succeeded
        # Cuts in quick succession (a refusal episode): when the first was,
        # and the launches and successes then.
        self.episode = (now, 0, 0)
        self.gap: float | None = None  # seconds between launches (smoothed)
        # A lane's attempts underway: the seconds since the launch before
        # each; those of its last successes; the longest refused since the
        # last cut.
        # While the client is the bottleneck: a trial of a wider limit
        # (_Trial), the least limit the last kept trial leaves, when the next
        # trial may start and how long to wait after one that found nothing;
        # (time, successes so far) at each decision.
        self.tput: _Trial | None = None
        self.tput_floor = 0.0
        self.tput_next = now + _TRIAL_SPAN
        self.tput_wait = _TRIAL_SPAN
        self.tput_step = _START_GROWTH - 1
        self.tput_marks: collections.deque[tuple[float, int]] = collections.deque()
        self.spacing: dict[int, float] = {}
        self.accepted_gaps: list[float] = []
        self.refused_gap: float | None = None
        # The controller's load readings, CPU seconds and their span when the
        # window opened.
        self.marks: tuple[int, float, float] = (0, 0.0, 0.0)


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
        rate_backoff: a pace is set this far under the ceiling, the launch
            rate refused at.
        rate_increase: fraction of the last cut rate added per window with
            successes and no drop, up to the plateau.
        calm_seconds: drop-free seconds on the plateau after which its
            margin halves (or, once small, the pace probes beyond the
            ceiling by 25% per window) ...
        calm_samples: ... which also takes this many successes (a lane
            sending one message a second is calm after a minute, not after
            two messages).
        margin: the plateau's margin under the ceiling after a first
            refusal: room for the arrivals' jitter at a strict limit.
        max_margin: the most the margin doubles to after refusals on the
            plateau.
        min_rate: the pace never goes below this many launches per second.
        idle_after: a lane's state is dropped (and its width and rate given
            back to the queue's defaults) after this many idle seconds.
        load: measures the client's event-loop lag and CPU share at each
            tick (default: :class:`~fetchq.control.load.ProcessLoad`, this
            process on the queue's clock).
        client_lag: a window's median loop lag (seconds) from which the client
            counts as the bottleneck: the width stops growing.
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
        calm_samples: int = 50,
        margin: float = 0.05,
        max_margin: float = 0.25,
        min_rate: float = 0.1,
        idle_after: float = 60.0,
        load: ClientLoad | None = None,
        client_lag: float = 0.005,
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
            ("client_lag", client_lag),
        ):
            if isinstance(value, bool) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a number > 0, not {value!r}")
        if not 0 < rate_backoff < 1:
            raise ValueError(f"rate_backoff must be in (0, 1), not {rate_backoff!r}")
        if not 0 < rate_increase <= 1:
            raise ValueError(f"rate_increase must be in (0, 1], not {rate_increase!r}")
        if not 0 <= margin <= max_margin < 1:
            raise ValueError(
                f"margin ({margin!r}) and max_margin ({max_margin!r}) must "
                "satisfy 0 <= margin <= max_margin < 1"
            )
        check_width(calm_samples, "calm_samples")
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
        self.calm_samples = calm_samples
        self.margin = margin
        self.max_margin = max_margin
        self.min_rate = min_rate
        self.idle_after = idle_after
        self.load: ClientLoad = ProcessLoad() if load is None else load
        self.client_lag = client_lag
        self._every = interval / 10  # between readings of the client's load
        self._rng = random.Random() if rng is None else rng

        self._queue: ResizableDispatchQueue | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._timer: DelayedCallLike | None = None
        self._sampler: DelayedCallLike | None = None
        self._due = 0.0  # when the sampler was due
        self._urgent: list[DelayedCallLike] = []
        self._global: _Scope | None = None
        self._lanes: dict[Any, _Scope] = {}
        self._restore_hold: Any = None  # the queue's guessed_hold on attach
        # Per lane: (rate, margin) when a lane was refused at the rate set for
        # every lane (the queue's lane_rate), which the others then keep under.
        self._learned: tuple[float, float] | None = None
        self._teach = False
        # The client's load: the latest readings' loop lag and how many
        # readings there were; CPU seconds and the seconds they were measured
        # over.
        self._lags: list[float] = []
        self._readings = 0
        self._lag = 0.0  # smoothed
        self._cpu_sum = 0.0
        self._cpu_span = 0.0
        self._last_tick = 0.0

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
        self._last_tick = now
        if self.pace and hasattr(queue, "guessed_hold"):
            self._restore_hold = queue.guessed_hold
            queue.guessed_hold = self._guessed_hold
        if not self.per_lane:
            start = queue.width if self.initial is None else self.initial
            self._global = self._new_scope(None, start, queue.rate, now)
            self._decide(self._global, now, "probe")
        self._unsubscribe = queue.subscribe(self._observe)
        self._timer = queue.clock.callLater(self.interval, self._tick)
        self._due = now + self._every
        self._sampler = queue.clock.callLater(self._every, self._sample)

    def detach(self) -> None:
        """Stop steering.  The widths stay as last set; launch rates the
        controller set go back to what they were on attach (lanes: to the
        queue's lane default)."""
        queue = self._queue
        if queue is None:
            return
        assert self._unsubscribe is not None
        self._unsubscribe()
        for call in (self._timer, self._sampler, *self._urgent):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._sampler = None
        self._urgent = []
        if self.pace and hasattr(queue, "guessed_hold"):
            if queue.guessed_hold == self._guessed_hold:
                queue.guessed_hold = self._restore_hold
            self._restore_hold = None
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
        if key is not None and self._learned is not None:
            self._learn(scope, now)
        return scope

    def _learn(self, scope: _Scope, now: float) -> None:
        """Pace a lane that was not refused yet at the plateau another lane
        found under the lanes' common rate: they share the remote side, and
        one refusal at that rate says the rate is at its limit.  (A lane
        that did not need it gets the rate back after a calm spell.)"""
        assert self._learned is not None
        rate, margin = self._learned
        if scope.cap_rate != rate or scope.rate is not None or scope.ceiling:
            return
        scope.ceiling = rate
        scope.margin = margin
        scope.rate = scope.cut_rate = rate * (1 - margin)
        scope.calm_since = now
        scope.calm_ok = 0
        scope.probe = None
        # Refusals of attempts launched before are the old rate's: as a cut.
        if scope.last_cut > -math.inf:
            scope.prev_ok = scope.fresh_ok
        scope.fresh_ok = 0
        scope.last_cut = now

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
            scope.launches += 1
            now = event.time
            if (
                scope.launches == 1
                and scope.key is not None
                and scope.cap_rate is not None
                and self._queue is not None
            ):
                scope.first = event.job
            last = scope.last_launch
            if last is not None:
                gap = now - last
                scope.gap = (
                    gap if scope.gap is None else scope.gap + 0.25 * (gap - scope.gap)
                )
                if scope.key is not None:
                    if len(scope.spacing) >= _MAX_SPACINGS:
                        scope.spacing.clear()
                    scope.spacing[id(event.job)] = gap
            scope.last_launch = now
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
            if scope.first is event.job and self._queue is not None:
                scope.first = None
                self._urgent.append(
                    self._queue.clock.callLater(0, self._first_answered, scope)
                )
            signal = self._classify(event)
            spaced = scope.spacing.pop(id(event.job), None)
            if signal is _SAMPLE:
                if spaced is not None:
                    gaps = scope.accepted_gaps
                    gaps.append(spaced)
                    if len(gaps) > _ACCEPTED_GAPS:
                        del gaps[0]
                scope.samples += 1
                scope.oks += 1
                if len(scope.latencies) < _MAX_WINDOW_SAMPLES:
                    scope.latencies.append(latency)
                if launched >= scope.last_cut:
                    scope.fresh_ok += 1
                if launched >= scope.calm_since:
                    scope.calm_ok += 1
                probe = scope.probe
                if probe is not None and launched >= probe.started:
                    probe.latencies.append(latency)
            elif signal is _DROP or signal is _THROTTLE:
                scope.drops += 1
                if signal is _THROTTLE:
                    scope.throttles += 1
                if launched >= scope.last_cut:
                    scope.fresh += 1
                    if spaced is not None:
                        scope.refused_gap = max(scope.refused_gap or 0.0, spaced)
                    if not scope.urgent and self._queue is not None:
                        scope.urgent = True
                        call = self._queue.clock.callLater(0, self._drop_now, scope)
                        self._urgent.append(call)

    # ------------------------------------------------------------------
    # Deciding

    def _start(self, scope: _Scope) -> None:
        queue = self._queue
        if queue is not None and self._lanes.get(scope.key) is scope:
            why = "probe" if scope.rate is None else "learned"
            self._decide(scope, queue.clock.seconds(), why)

    # A rate-limited lane's first attempt pays for its connection (name
    # lookup, TCP, TLS) and so reaches the remote side late; launched an
    # interval after it, the second, on the warm connection, would arrive
    # less than an interval after the first, and a strict limit refuses it
    # (measured: ~50 ms of 1 s against a provider on loopback, every sender
    # refused on its second message).  So when the first answer comes
    # within the interval (it came after the first arrival), the second
    # launch waits an interval from it: one round trip per lane, once.
    # (Holds only extend: one the answer itself brought, a 429's, stays.)

    def _first_answered(self, scope: _Scope) -> None:
        queue = self._queue
        rate = scope.rate or scope.cap_rate
        if queue is not None and rate and self._lanes.get(scope.key) is scope:
            queue.hold(1 / rate, scope.key)

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
                    self._decide(
                        scope, now, "baseline" if probe.before is None else "knee"
                    )
                continue
            if now >= scope.next_probe and scope.rate is None:
                self._decide(scope, now, "probe")
                continue
            if self._step_due(scope, now):
                self._decide(scope, now, "step-down")
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

    def _sample(self) -> None:
        """Read the client's load: ten times per decision interval, so a
        window's median lag sees the event loop's stalls."""
        queue = self._queue
        if queue is None:
            return
        now = queue.clock.seconds()
        reading = self.load.read(self._due, now)
        self._lags.append(reading.lag)
        if len(self._lags) > 2 * _MAX_LAGS:
            del self._lags[:-_MAX_LAGS]
        self._readings += 1
        self._lag += 0.02 * (reading.lag - self._lag)  # about a second
        if reading.cpu is not None and now > self._last_tick:
            self._cpu_sum += reading.cpu * (now - self._last_tick)
            self._cpu_span += now - self._last_tick
        self._last_tick = now
        self._due = now + self._every
        self._sampler = queue.clock.callLater(self._every, self._sample)

    def _decide(self, scope: _Scope, now: float, why: str) -> None:
        """One decision for ``scope``: ``why`` is "drop", "window", "probe"
        or "baseline"."""
        queue = self._queue
        assert queue is not None
        duration = now - scope.opened
        samples = scope.samples
        latency = statistics.median(scope.latencies) if scope.latencies else None
        in_flight = max(scope.peak, scope.underway)
        window = Window(duration, samples, latency, scope.drops, in_flight)
        throttles = scope.throttles
        self._smooth(scope, window)
        # What the client added: the loop's median lag over the window.
        readings, cpu_sum, cpu_span = scope.marks
        lag = self._lag_since(readings)
        span = self._cpu_span - cpu_span
        cpu = (self._cpu_sum - cpu_sum) / span if span > 0 else None
        # The client is the bottleneck when it uses a whole core, or when
        # answers wait for it a good part of their latency.
        client_bound = (cpu is not None and cpu >= _CPU_BOUND) or (
            lag is not None
            and latency is not None
            and lag >= max(self.client_lag, _LAG_SHARE * latency)
        )
        judged = _discount(latency, lag, scope.base_lag)
        if why == "step-down" and not (
            judged is not None
            and scope.judged is not None
            and samples >= self.min_samples
            and not window.drops
            and abs(judged - scope.judged) <= 0.1 * scope.judged  # steady
        ):
            why = "window"  # not now: this window is a window like any
        reason = why
        gradient: float | None = None
        if why == "drop":
            reason = self._on_drop(scope, now)
        elif why == "probe":
            scope.probe = _Probe(now, self._readings)
        elif why == "step-down":
            assert judged is not None and scope.latency is not None
            # Compared with the latency of the last second (smoothed), less
            # the lag it had beyond the baseline's, as this window's is.
            before = scope.latency - (judged - latency if latency else 0.0)
            scope.probe = _Probe(now, self._readings, before)
        elif why == "knee":
            probe = scope.probe
            assert probe is not None and probe.before is not None
            scope.probe = None
            scope.knee = None
            if probe.latencies:
                kept = _discount(
                    statistics.median(probe.latencies),
                    self._lag_since(probe.readings),
                    scope.base_lag,
                )
                assert kept is not None
                if kept >= _KNEE * probe.before:
                    # A quarter fewer in flight, and no faster: not a queue.
                    scope.knee = kept
            jitter = 1 + 0.1 * (2 * self._rng.random() - 1)
            scope.next_step = now + _STEP_EVERY * jitter
        elif why == "baseline":
            probe = scope.probe
            assert probe is not None
            if probe.latencies:
                scope.baseline = statistics.median(probe.latencies)
                scope.base_lag = self._lag_since(probe.readings) or 0.0
                scope.knee = None
            scope.probe = None
            jitter = 1 + 0.1 * (2 * self._rng.random() - 1)
            scope.next_probe = now + self.probe_every * jitter
            if scope.baseline is None and scope.launches:
                # Launched, and nothing came back in time (a slow start, a
                # busy client): without a baseline nothing grows, so again
                # soon rather than in probe_every.
                scope.next_probe = now + max(self.max_window, 10 * self.interval)
            reason = "baseline"
        elif why == "window":
            if not window.drops:
                scope.cutting = False
            if (
                latency is not None
                and scope.baseline is not None
                and samples >= self.min_samples
                and scope.probe is None
                and latency < scope.baseline
            ):
                scope.baseline = latency
                scope.base_lag = lag or 0.0
            scope.judged = judged if samples >= self.min_samples else None
            if window.drops:
                scope.knee = None
            floor = scope.baseline
            if floor is not None and scope.knee is not None:
                floor = max(floor, scope.knee)
            seen = Window(duration, samples, judged, window.drops, in_flight)
            step = self.algorithm.on_window(scope.limit, seen, floor)
            reason, gradient = step.reason, step.gradient
            limit = step.limit
            if scope.starting:
                if step.reason == "grow" and (gradient or 0.0) >= _START_GRADIENT:
                    # Nothing in the way yet: grow by a quarter, not a step,
                    # while every slot is in use.
                    if in_flight >= scope.width:
                        limit = max(limit, scope.limit * _START_GROWTH)
                elif step.reason != "app-limited":
                    scope.starting = False  # the first sign of a queue
            trial = self._trial(scope, now, client_bound, limit, in_flight, window)
            if trial is not None:
                reason = trial
            elif client_bound and limit != scope.limit and not window.drops:
                # The latency is the client's as much as the server's: hold
                # the width (trials find whether a wider one pays).
                reason = "client-bound"
            else:
                if not window.drops:
                    limit = max(limit, scope.tput_floor)
                else:
                    scope.tput_floor = 0.0
                scope.limit = self._clamp(limit)
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
        scope.marks = (self._readings, self._cpu_sum, self._cpu_span)
        self._apply(queue, scope)
        decision = self._decision(scope, now, reason, window, throttles, gradient)
        if lag is not None or cpu is not None:
            decision = attrs.evolve(
                decision, lag=lag, cpu=cpu, client_bound=client_bound
            )
        queue.announce(decision)
        if self._teach:
            self._teach = False
            for other in list(self._lanes.values()):
                if other is not scope and other.rate is None:
                    self._learn(other, now)
                    if other.rate is not None:
                        self._decide(other, now, "learned")

    def _ok_rate(self, scope: _Scope, since: float, now: float) -> float | None:
        """Successes per second from ``since`` to ``now`` (from the marks
        taken at each decision), or None without a mark that old."""
        marks = scope.tput_marks
        then = None
        for at, oks in marks:
            if at > since:
                break
            then = (at, oks)
        if then is None or now <= then[0]:
            return None
        return (scope.oks - then[1]) / (now - then[0])

    def _trial(
        self,
        scope: _Scope,
        now: float,
        client_bound: bool,
        limit: float,
        in_flight: int,
        window: Window,
    ) -> str | None:
        """While the client is the bottleneck, whether a wider limit still
        pays: a CPU share or a loop lag says the client is busy, not that
        more in flight would not finish sooner.  Try a quarter more for
        ``_TRIAL_SPAN`` seconds (after ``_TRIAL_SETTLE``), keep it if the
        successes per second rose by ``_TRIAL_GAIN`` (and try twice the
        step next), else go back and wait twice as long before the next
        trial.  The reason of the decision, or
        None when no trial is underway or due."""
        marks = scope.tput_marks
        marks.append((now, scope.oks))
        while marks and marks[0][0] < now - 4 * _TRIAL_SPAN:
            marks.popleft()
        trial = scope.tput
        if trial is not None:
            if window.drops or scope.rate is not None:
                scope.tput = None  # the server answers: not the client's call
                scope.limit = self._clamp(min(trial.from_limit, limit))
                return "client-back"
            if now - trial.started < _TRIAL_SETTLE + _TRIAL_SPAN:
                scope.limit = trial.to_limit
                return "client-trial"
            scope.tput = None
            rate = self._ok_rate(scope, trial.started + _TRIAL_SETTLE, now)
            # A gain beyond what chance gives counts of this size (about
            # 1/sqrt(n) each): else a lucky second widens past the capacity.
            counted = (rate or 0.0) * (now - trial.started - _TRIAL_SETTLE)
            gain = max(_TRIAL_GAIN, 1 + _TRIAL_NOISE / math.sqrt(max(counted, 1.0)))
            if rate is not None and rate >= gain * trial.before:
                scope.tput_floor = _TRIAL_KEEP * trial.to_limit
                scope.tput_step = min(1.0, 2 * scope.tput_step)
                scope.tput_wait = _TRIAL_SPAN
                scope.tput_next = now
                return "client-grew"
            scope.limit = trial.from_limit
            scope.tput_floor = min(scope.tput_floor, trial.from_limit)
            scope.tput_step = _START_GROWTH - 1
            scope.tput_wait = min(_TRIAL_MAX_WAIT, 2 * scope.tput_wait)
            scope.tput_next = now + scope.tput_wait
            return "client-back"
        if (
            not client_bound
            or now < scope.tput_next
            or scope.rate is not None
            or window.drops
            or in_flight < scope.width
            or scope.limit >= self.max_width
        ):
            return None
        before = self._ok_rate(scope, now - _TRIAL_SPAN, now)
        if not before:
            return None
        wider = self._clamp(max(scope.limit + 1, (1 + scope.tput_step) * scope.limit))
        scope.tput = _Trial(now, scope.limit, wider, before)
        scope.limit = wider
        return "client-trial"

    def _step_due(self, scope: _Scope, now: float) -> bool:
        """Whether to step down now: latency well above the floor and no
        drop in the last window, a width wide enough to step from, not
        paced, and the client not the bottleneck."""
        judged = scope.judged
        if (
            now < scope.next_step
            or judged is None
            or scope.baseline is None
            or scope.rate is not None
            or scope.cutting
            or scope.width < _STEP_FROM
        ):
            return False
        return judged >= 1.05 * max(scope.baseline, scope.knee or 0.0)

    def _lag_since(self, readings: int) -> float | None:
        """The median loop lag of the load readings after the first
        ``readings`` (a median, as the window's latency is: a rare stall
        moves neither)."""
        n = min(self._readings - readings, _MAX_LAGS)
        return statistics.median(self._lags[-n:]) if n > 0 else None

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

    def _useful_width(self, scope: _Scope, spare: int = 1) -> int:
        """The least width that carries the recent successful throughput
        (Little's law), plus ``spare``."""
        if scope.goodput is None or scope.latency is None:
            return self.max_width
        return max(self.min_width, math.ceil(scope.goodput * scope.latency) + spare)

    def _launch_rate(self, scope: _Scope) -> float | None:
        """The scope's recent launches per second (smoothed), or None."""
        gap = scope.gap
        if gap is None:
            return None
        return math.inf if gap <= 0 else 1 / gap

    def _plateau(self, scope: _Scope) -> float | None:
        """Where the pace settles: a margin under the ceiling."""
        if scope.ceiling is None:
            return None
        return max(self.min_rate, scope.ceiling * (1 - scope.margin))

    def _on_drop(self, scope: _Scope, now: float) -> str:
        scope.starting = False
        if (
            self.pace
            and scope.key is None
            and scope.rate is not None
            and now - scope.last_cut < max(self.interval, 2 * (scope.latency or 0.0))
            and scope.fresh_ok >= 4 * scope.fresh
        ):
            # Refused right after the queue's pace was cut: the remote side
            # is still draining what the pace before the cut sent (a leaky
            # bucket stays full a while), so this says nothing of the new
            # pace.  At 1,000/s each such refusal cut again, six cuts in 20 ms
            # (2,118/s to 710/s against a 1,000/s quota), and the ceiling
            # came out 20-30% low.  The cut stands while most attempts since
            # it succeed; a refusal after this spell, or among many, is
            # judged as usual.
            return "draining"
        # Successes of attempts launched since the cut before last (the first
        # cut has none before it): none means an outage, not a quota.
        still_succeeding = scope.fresh_ok + scope.prev_ok > 0
        # Since the first of these cuts in quick succession: while most
        # attempts were refused, the remote side accepted what succeeded
        # (plus one, to be an upper bound) per second.
        if now - scope.last_cut > self.calm_seconds:
            scope.episode = (now, scope.launches, scope.oks)
        began, launched, ok = scope.episode
        launched, ok = scope.launches - launched, scope.oks - ok + 1
        accepted = ok / (now - began) if now > began and launched >= 2 * ok else None
        # Likewise for attempts launched since the last cut, for a paced
        # scope (launching all along): the first of them came back a latency
        # after it.
        launched, ok = scope.launches - scope.cut_launches, scope.fresh_ok + 1
        span = now - scope.last_cut - (scope.latency or 0.0)
        recent = (
            ok / span
            if scope.last_cut > -math.inf and span > 0 and 2 * launched >= 3 * ok
            else None
        )
        scope.cut_launches = scope.launches
        # While nothing launched since the last cut got through, the width is
        # not what limits: the least one wastes the fewest attempts.
        useful = self._useful_width(scope) if scope.fresh_ok else self.min_width
        scope.prev_ok = scope.fresh_ok if scope.last_cut > -math.inf else 0
        scope.last_cut = now
        scope.fresh_ok = 0
        # Drops persist at the floor: the last decision cut to it already.
        persist = scope.cutting and scope.limit <= useful
        # A launch rate binds (a pace, or a rate set before the controller
        # came, which launches run at): the drop is about the rate.
        in_force = scope.rate if scope.rate is not None else scope.cap_rate
        launching = self._launch_rate(scope)
        rate_bound = scope.rate is not None or (
            in_force is not None
            and launching is not None
            and launching >= 0.8 * in_force
        )
        scope.cutting = True
        limit = self.algorithm.on_drop(scope.limit).limit
        if self.pace:
            limit = min(limit, useful)
        scope.limit = self._clamp(limit)
        if not (self.pace and (persist or rate_bound) and still_succeeding):
            return "drop"
        # The remote side limits requests per second.  Where was it refused?
        # At the rate launches went at, or, where most were refused, at about
        # what it accepted since the refusals began (or since the last cut).
        # Not yet paced: only the latter, over the refusals so far.
        estimates = [launching, accepted]
        if rate_bound:
            estimates += [in_force, recent]
        # A lane (one sender, one host) knows the spacing each refused launch
        # had after the one before: the limit's interval is longer than it.
        refused_gap, scope.refused_gap = scope.refused_gap, None
        gap_rate = 1 / refused_gap if refused_gap else 0.0
        overlap = 0.0
        if refused_gap and scope.key is not None:
            estimates.append(gap_rate)
            # Launches as close together (or closer) got through: the remote
            # side's clock strays from ours by about the difference.
            closer = [g for g in scope.accepted_gaps if g < refused_gap]
            if closer:
                overlap = (refused_gap - min(closer)) / refused_gap
        refused_at = min((e for e in estimates if e), default=math.inf)
        if refused_at == math.inf:
            refused_at = scope.goodput or self.min_rate
        good = scope.good
        if scope.rate is None:
            scope.episode = (now, scope.launches, scope.oks)  # paced from now on
            cap = scope.cap_rate
            # Refused at the lanes' common rate: launches went at it, or the
            # refused one came an interval of it after the one before (a
            # rate's interval give or take a float's last digits).
            if scope.key is not None and cap is not None:
                if gap_rate >= cap * 0.999:
                    # The gap says it: the limit is the common rate, whatever
                    # the launches averaged (a first answer awaited, say).
                    refused_at = max(refused_at, cap)
                if refused_at >= cap * 0.999:
                    self._teach = True
        elif good is not None:
            if scope.rate > good:
                # Probing beyond a pace that held: the limit is no lower, and
                # a burst the remote side allows may have let the probe climb
                # far past it: halfway (geometrically), and the plateau no
                # lower than the pace that held.
                if scope.probing:
                    refused_at = math.sqrt(good * max(good, refused_at))
                    scope.quiet = min(16, 2 * scope.quiet)  # probe less often
                margin = max(scope.margin, self.margin)
                refused_at = max(refused_at, good / (1 - margin))
            else:
                scope.good = None  # the limit fell below it
        plateau = self._plateau(scope)
        if (
            scope.rate is not None
            and plateau is not None
            and plateau * 0.999 <= scope.rate <= plateau * 1.001
        ):
            # Refused on the plateau: a strict limit, and the arrivals jitter.
            scope.margin = min(self.max_margin, max(self.margin, 2 * scope.margin))
        else:
            scope.margin = max(scope.margin, self.margin)
        if overlap:
            # A margin as wide as the jitter seen (at most max_margin).
            scope.margin = min(self.max_margin, max(scope.margin, 1.5 * overlap))
        scope.ceiling = max(self.min_rate, refused_at)
        if self._teach:
            assert scope.cap_rate is not None
            self._learned = (scope.cap_rate, scope.margin)
        if scope.key is None:
            rate = scope.ceiling * self.rate_backoff
        else:
            # A lane's refusals are its own launches' spacing: just under the
            # plateau (twice the margin under the ceiling), not far below.
            rate = scope.ceiling * max(self.rate_backoff, 1 - 2 * scope.margin)
        if scope.cap_rate is not None:
            rate = min(rate, scope.cap_rate)
        scope.rate = scope.cut_rate = max(self.min_rate, rate)
        scope.calm_since = now
        scope.calm_ok = 0
        scope.probing = 0
        scope.probe = None  # a probe cannot measure anything while paced
        return "pace"

    def _relax_pace(self, scope: _Scope, window: Window, now: float) -> str:
        """A window without a new drop while paced: creep up to the plateau,
        halve a margin that refusals doubled after a calm spell there, probe
        beyond the ceiling after one at the first margin, or give the pace
        back."""
        rate = scope.rate
        assert rate is not None
        plateau = self._plateau(scope)
        if scope.probing:
            # Beyond the ceiling, in steps that double: was a quota lifted?
            # With windows of fewer than min_samples answers, a step only
            # once min_samples more have succeeded: at 10/s a window holds
            # one answer, and a quota's burst takes in the excess for
            # seconds before it refuses (a probe at 10/s with burst 20
            # reached 111/s before its first refusal, and the cuts back
            # down cost seven more).
            if (
                window.samples < self.min_samples
                and scope.oks - scope.probe_oks < self.min_samples
            ):
                return "paced"
            good = scope.good or rate
            rate = max(
                good * (1 + self.rate_increase * 2**scope.probing),
                rate * (1 + self.rate_increase),
            )
            scope.probing += 1
            scope.probe_oks = scope.oks
        elif plateau is not None and rate < plateau * 0.999:
            if not window.samples or window.drops:
                return "paced"
            step = self.rate_increase * scope.cut_rate
            if scope.key is None:
                rate = min(plateau, rate + step)
            else:
                # A lane climbs halfway to its plateau per window.
                rate += max(step, (plateau - rate) / 2)
                if rate >= plateau * (1 - _NEAR):
                    rate = plateau
        elif not (
            now - scope.calm_since >= self.calm_seconds * scope.quiet
            and scope.calm_ok >= self.calm_samples * scope.quiet
        ):
            return "paced"
        elif scope.margin > self.margin and plateau is not None:
            # A calm spell on the plateau: give back half the margin.
            scope.margin = max(self.margin, scope.margin / 2)
            scope.calm_since = now
            scope.calm_ok = 0
            return "margin"
        else:
            if scope.good is not None and rate >= 1.25 * scope.good:
                scope.quiet = 1  # the limit rose: probe as often as at first
            scope.good = rate  # it held for a calm spell
            scope.probing = 1
            scope.probe_oks = scope.oks
            rate *= 1 + self.rate_increase
        latency = scope.latency
        cap = scope.cap_rate
        if (cap is not None and rate >= cap) or (
            latency is not None and rate * latency >= scope.limit
        ):
            scope.rate = None  # the width binds before the pace would
            scope.probing = 0
            scope.next_probe = 0.0
            return "unpace"
        scope.rate = rate
        return "pace-up"

    def _guessed_hold(self, key: Any, guess: float) -> float:
        """The queue's ``guessed_hold``: a throttle without a delay from the
        remote side holds the lane for one launch at the pace in force (or,
        unpaced, at the rate it accepted since refusals began), not the
        adapter's guess: the controller cuts the width or the pace on the
        next turn."""
        scope = self._global if not self.per_lane else self._lanes.get(key)
        if scope is None:
            return guess
        rate = scope.rate if scope.rate is not None else scope.cap_rate
        if rate is not None:
            return min(guess, 1 / rate)
        # Unpaced: one launch at the rate the remote side accepted since
        # these refusals began (at most), or at the recent launch rate.
        assert self._queue is not None
        now = self._queue.clock.seconds()
        hold = 0.0
        if now - scope.last_cut <= self.calm_seconds:
            # Twice what the refusals have lasted per success: a few
            # refusals find a pace however slow, and at most double it.
            began, _, ok = scope.episode
            hold = 2 * (now - began) / (scope.oks - ok + 1)
        launching = self._launch_rate(scope)
        if launching:
            hold = max(hold, 1 / launching)
        return min(guess, hold)

    def _clamp(self, limit: float) -> float:
        return min(float(self.max_width), max(float(self.min_width), limit))

    def _apply(self, queue: ResizableDispatchQueue, scope: _Scope) -> None:
        width = round(scope.limit)
        probe = scope.probe
        if probe is not None:
            if probe.before is None:
                width = min(width, self.probe_width)
            else:
                width = max(self.min_width, round(0.75 * scope.limit))
        if width != scope.width:
            scope.width = width
            if scope.key is None:
                queue.setWidth(width)
            else:
                queue.set_lane_width(scope.key, width)
        rate = scope.rate
        applied = scope.applied_rate
        if rate is None:
            rate = scope.cap_rate
        elif self._lag > 0:
            # Each wait for the pace's next launch ends late by the loop's
            # lag: shorten it by as much, so the launches keep the pace.
            rate = 1 / max(1 / rate - self._lag, 0.5 / rate)
            if scope.cap_rate is not None:
                rate = min(rate, scope.cap_rate)
            if applied is not None and abs(rate - applied) <= 0.005 * applied:
                rate = applied  # not worth a change
        if rate != applied:
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
