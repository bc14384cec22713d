"""The control layer: signals, limit algorithms, the adaptive controller.

The behaviour targets of issue 4 are checked on the simulated servers of
:mod:`fetchq.control.sim`, in simulated time, so every figure is exact and
repeatable.  The capacity-20 model has a 10 ms base latency: ideal 2,000
jobs/s.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet import error as tx_error
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from fetchq import (
    ControlDecision,
    Job,
    JobFinished,
    Outcome,
    ResizableDispatchQueue,
    fetch,
)
from fetchq.control import (
    AIMD,
    AdaptiveController,
    Default,
    FixedWidth,
    Gradient,
    Signal,
    Window,
    algorithm,
    classify,
)
from fetchq.control.sim import Burst, CapacityServer, QuotaServer, Rejected, simulate
from fetchq.errors import Throttled

BASE = 0.01
IDEAL = 2000.0


def good(throughput: float, latency: float) -> bool:
    """The capacity-20 target: >= 0.9 of ideal at <= 1.5x base latency."""
    return throughput >= 0.9 * IDEAL and latency <= 1.5 * BASE


# ----------------------------------------------------------------------
# Signals


def finished(outcome: Outcome, error: BaseException | None = None) -> JobFinished:
    job = Job("x", 0, 0, None, None, 0.0)
    if error is not None:
        job._outcome = Failure(error)
    return JobFinished(job, outcome, 0.01, 1.0)


class OwnSignal(Exception):
    signal = Signal.DROP


@pytest.mark.parametrize(
    ("outcome", "error", "signal"),
    [
        (Outcome.OK, None, Signal.SAMPLE),
        (Outcome.CANCELLED, defer.CancelledError(), Signal.IGNORE),
        (Outcome.THROTTLED, Throttled(2.0), Signal.THROTTLE),
        (Outcome.RETRIED, tx_error.ConnectionLost(), Signal.DROP),
        (Outcome.RETRIED, defer.TimeoutError(), Signal.DROP),
        (Outcome.FAILED, ValueError("bad request"), Signal.IGNORE),
        (Outcome.FAILED, tx_error.DNSLookupError("nowhere"), Signal.IGNORE),
        (Outcome.RETRIED, OwnSignal(), Signal.DROP),
        (Outcome.RETRIED, Rejected("429"), Signal.DROP),
        # The fetch adapter's errors carry their own signal.
        (Outcome.RETRIED, fetch.ConnectTimeout(2.0), Signal.DROP),
        (Outcome.RETRIED, fetch.BodyTimeout(2.0), Signal.DROP),
        (Outcome.RETRIED, fetch.ConnectionFailed("reset"), Signal.DROP),
        (Outcome.FAILED, fetch.DNSFailed("no such host"), Signal.IGNORE),
        (Outcome.THROTTLED, fetch.HTTPThrottled(429, 1.0), Signal.THROTTLE),
        (Outcome.RETRIED, fetch.HTTPRetryAfter(503, 1.0), Signal.THROTTLE),
        (Outcome.RETRIED, fetch.HTTPRetryAfter(500, 1.0), Signal.IGNORE),
        (Outcome.RETRIED, fetch.RetryableStatus(504), Signal.DROP),
        (Outcome.RETRIED, fetch.RetryableStatus(502), Signal.IGNORE),
        (Outcome.FAILED, fetch.HTTPStatusError(404), Signal.IGNORE),
        (Outcome.FAILED, fetch.BadURL("nope", "no scheme"), Signal.IGNORE),
    ],
)
def test_classify(
    outcome: Outcome, error: BaseException | None, signal: Signal
) -> None:
    assert classify(finished(outcome, error)) is signal


# ----------------------------------------------------------------------
# Algorithms, pure


def window(latency: float | None = 0.01, in_flight: int = 20, drops: int = 0) -> Window:
    return Window(0.1, 0 if latency is None else 10, latency, drops, in_flight)


def test_aimd_grows_by_one_while_used_and_backs_off_on_drop() -> None:
    aimd = AIMD()
    assert aimd.on_window(20.0, window(in_flight=20), None).limit == 21.0
    assert aimd.on_window(20.0, window(in_flight=9), None).reason == "app-limited"
    assert aimd.on_window(20.0, window(in_flight=9), None).limit == 20.0
    assert aimd.on_drop(20.0).limit == pytest.approx(18.0)


def test_gradient_shrinks_with_latency_clamped_and_smoothed() -> None:
    gradient = Gradient()
    # At the baseline: grow by half the headroom (smoothing 0.5).
    step = gradient.on_window(16.0, window(0.01), 0.01)
    assert step.gradient == 1.0
    assert step.limit == pytest.approx(16 + 0.5 * 2.0)
    # Twice the baseline: gradient 0.5, target 16*0.5 + 2 = 10, halfway there.
    step = gradient.on_window(16.0, window(0.02), 0.01)
    assert step.gradient == 0.5
    assert step.limit == pytest.approx(13.0)
    assert step.reason == "shrink"
    # Ten times the baseline: clamped at min_gradient.
    assert gradient.on_window(16.0, window(0.1), 0.01).gradient == 0.5
    # App-limited at the baseline: hold.
    assert gradient.on_window(16.0, window(0.01, in_flight=4), 0.01).limit == 16.0
    # A drop is never ignored.
    assert gradient.on_drop(16.0).limit < 16.0


def test_default_grows_by_delay_and_backs_off_by_loss() -> None:
    default = Default()
    assert default.on_window(16.0, window(0.01), 0.01).limit == pytest.approx(17.0)
    assert default.on_drop(16.0).limit == pytest.approx(14.4)


def test_algorithm_by_name() -> None:
    assert isinstance(algorithm("aimd"), AIMD)
    assert isinstance(algorithm("gradient"), Gradient)
    assert isinstance(algorithm("default"), Default)
    with pytest.raises(ValueError, match="unknown algorithm 'fast'"):
        algorithm("fast")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_width": 0}, "min_width must be >= 1"),
        ({"min_width": 5, "max_width": 4}, r"max_width \(4\) must be >= min_width"),
        ({"interval": 0}, "interval must be a number > 0"),
        ({"rate_backoff": 1.0}, r"rate_backoff must be in \(0, 1\)"),
    ],
)
def test_controller_settings_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveController(**kwargs)


# ----------------------------------------------------------------------
# Attaching and detaching


def test_attach_announces_decisions_and_detach_stops_cleanly() -> None:
    clock = Clock()
    queue = ResizableDispatchQueue(lambda arg: None, width=8, clock=clock, rate=50.0)
    seen: list[Any] = []
    queue.subscribe(seen.append)
    controller = AdaptiveController(min_width=2, max_width=40)
    controller.attach(queue)
    assert controller.attached
    # It starts by probing the baseline at the probe width.
    assert queue.width == 2
    decisions = [e for e in seen if isinstance(e, ControlDecision)]
    assert decisions[0].reason == "probe"
    assert decisions[0].controller == "default"
    with pytest.raises(RuntimeError, match="already attached"):
        controller.attach(queue)
    assert clock.getDelayedCalls()
    controller.detach()
    assert not controller.attached
    assert clock.getDelayedCalls() == []
    assert queue.rate == 50.0  # the rate found on attach
    controller.detach()  # twice is harmless
    # Detached: nothing more is decided.
    before = len(seen)
    queue.put("x")
    clock.advance(5)
    assert not any(isinstance(e, ControlDecision) for e in seen[before:])


def test_fixed_width_is_a_controller() -> None:
    queue = ResizableDispatchQueue(lambda arg: None, width=1, clock=Clock())
    fixed = FixedWidth(7)
    fixed.attach(queue)
    assert queue.width == 7
    fixed.detach()
    assert queue.width == 7


# ----------------------------------------------------------------------
# Targets on the capacity-20 model


@pytest.mark.parametrize("growth", ["linear", "quadratic"])
@pytest.mark.parametrize("name", ["default", "gradient"])
def test_capacity_20_converges_fast_near_ideal(growth: str, name: str) -> None:
    result = simulate(
        lambda clock: CapacityServer(clock, 20, BASE, growth),
        AdaptiveController(algorithm(name), max_width=200),
        jobs=30_000,
    )
    converged = result.converged_at(good)
    assert converged is not None and converged <= 5.0
    end = result.elapsed
    assert result.throughput(5, end) >= 0.9 * IDEAL
    assert result.mean_latency(5, end) <= 1.5 * BASE
    assert result.done == 30_000


def test_no_creep_and_no_baseline_drift_under_long_overload() -> None:
    """Pitfalls: the limit creeping upward under moderate overload, and the
    baseline drifting up with it.  90 simulated seconds of a backlog."""
    result = simulate(
        lambda clock: CapacityServer(clock, 20, BASE, "linear"),
        AdaptiveController(max_width=500, rng=random.Random(1)),
        jobs=180_000,
    )
    assert result.elapsed >= 85
    assert result.max_width(10, result.elapsed) <= 26
    baselines = [d.baseline for d in result.decisions if d.baseline is not None]
    assert max(baselines) <= 1.05 * BASE
    assert result.mean_latency(10, result.elapsed) <= 1.3 * BASE
    # It kept probing: several re-measurements, not one at the start.
    assert sum(d.reason == "baseline" for d in result.decisions) >= 3


def test_follows_capacity_down_and_up() -> None:
    """Capacity 40 -> 10 at t=10 -> 40 at t=20."""
    result = simulate(
        lambda clock: CapacityServer(clock, [(0, 40), (10, 10), (20, 40)], BASE),
        AdaptiveController(max_width=200),
        jobs=80_000,
        limit=30,
    )
    assert result.width_at(9.9) >= 40
    # Within 5 s of the drop, back to capacity plus the headroom term
    # (sqrt(10)/2 ~ 1.6) and latency back within 1.5x base.
    assert result.max_width(15, 20) <= 12
    assert result.mean_latency(15, 20) <= 1.5 * BASE
    # Within 5 s of the rise, back to >= 0.9 of the new ideal (4,000/s).
    assert result.throughput(25, 30) >= 0.9 * 4000


def test_ignored_errors_do_not_move_the_width() -> None:
    """A burst of 500s says nothing about load: the width holds."""
    result = simulate(
        lambda clock: CapacityServer(clock, 20, BASE, bursts=[Burst(5, 6, "error")]),
        AdaptiveController(max_width=200),
        jobs=30_000,
    )
    assert not any(d.reason == "drop" for d in result.decisions)
    assert result.width_at(6.0) >= 18
    assert result.throughput(8, 12) >= 0.9 * IDEAL


@pytest.mark.parametrize("name", ["default", "gradient", "aimd"])
def test_drops_cut_the_width_then_it_recovers(name: str) -> None:
    """A burst of connection resets: every algorithm backs off (none ignores
    drops), then gets back to near ideal within 5 s."""
    result = simulate(
        lambda clock: CapacityServer(clock, 20, BASE, bursts=[Burst(5, 5.5, "reset")]),
        AdaptiveController(algorithm(name), max_width=25),
        jobs=30_000,
    )
    drops = [d for d in result.decisions if d.reason in ("drop", "pace")]
    assert drops and all(5 <= d.time < 6 for d in drops)
    assert min(d.width for d in drops) < result.width_at(4.9)
    assert result.throughput(10.5, 13) >= 0.9 * IDEAL


# ----------------------------------------------------------------------
# Quotas: pacing


def test_quota_with_retry_after_first_try_once_converged() -> None:
    result = simulate(
        lambda clock: QuotaServer(clock, rate=100, burst=10, latency=BASE),
        AdaptiveController(max_width=200),
        jobs=3000,
    )
    assert result.done == 3000
    assert result.first_try_ratio(start=5.0) >= 0.95
    assert result.throughput(5, 25) >= 0.9 * 100
    assert any(d.reason == "pace" for d in result.decisions)


def test_fast_quota_without_retry_after_is_paced() -> None:
    """1 ms latency, 100 req/s, 429 without Retry-After: width 1 alone would
    send 1,000 req/s, so only a pace can obey the quota."""
    jobs = 2000
    result = simulate(
        lambda clock: QuotaServer(clock, 100, 10, latency=0.001, retry_after=False),
        AdaptiveController(max_width=200),
        jobs=jobs,
    )
    assert result.done == jobs
    assert result.first_try_ratio() >= 0.90
    lower_bound = (jobs - 10) / 100  # the bucket starts full
    assert result.elapsed <= 1.3 * lower_bound
    # A fixed width cannot: most first tries are refused.
    fixed = simulate(
        lambda clock: QuotaServer(clock, 100, 10, latency=0.001, retry_after=False),
        1,
        jobs=jobs,
    )
    assert fixed.first_try_ratio() < 0.5


def test_pace_is_given_back_when_the_quota_lifts() -> None:
    servers: list[QuotaServer] = []

    def server(clock: Clock) -> QuotaServer:
        quota = QuotaServer(clock, 100, 10, latency=0.001, retry_after=False)
        clock.callLater(5, setattr, quota, "rate", 1e9)
        clock.callLater(5, setattr, quota, "burst", 10**9)
        servers.append(quota)
        return quota

    result = simulate(server, AdaptiveController(max_width=50), jobs=20_000)
    reasons = [d.reason for d in result.decisions]
    assert "pace" in reasons
    unpaced = [d for d in result.decisions if d.reason == "unpace"]
    assert unpaced and unpaced[0].time > 5
    assert result.decisions[-1].rate is None
    # And then the width grows past what the pace allowed.
    assert result.max_width(unpaced[0].time, result.elapsed) > 2


# ----------------------------------------------------------------------
# Per-lane control


def test_per_lane_widths_follow_each_lanes_capacity() -> None:
    def server(clock: Clock) -> Any:
        slow = CapacityServer(clock, 4, BASE)
        fast = CapacityServer(clock, 16, BASE)
        return lambda arg: (slow if arg % 2 else fast)(arg)

    result = simulate(
        server,
        AdaptiveController(max_width=100, per_lane=True),
        jobs=20_000,
        key=lambda i: "slow" if i % 2 else "fast",
        width=100,
    )
    last: dict[Any, ControlDecision] = {}
    for d in result.decisions:
        last[d.key] = d
    assert 4 <= last["slow"].width <= 6
    assert 16 <= last["fast"].width <= 20


# ----------------------------------------------------------------------
# Cancellations are not drops; app-limited queues do not grow


def test_cancelled_jobs_do_not_shrink_the_width() -> None:
    clock = Clock()
    server = CapacityServer(clock, 20, BASE)
    started: list[defer.Deferred[Any]] = []

    def slow(arg: object) -> defer.Deferred[Any]:
        d = server(arg)
        started.append(d)
        return d

    queue = ResizableDispatchQueue(slow, width=20, clock=clock)
    seen: list[Any] = []
    queue.subscribe(seen.append)
    controller = AdaptiveController(initial=20, max_width=100)
    controller.attach(queue)
    jobs = [queue.put(i) for i in range(5000)]
    for d in jobs:
        d.addErrback(lambda f: None)
    clock.advance(0.5)
    for _ in range(250):  # settled: the start's overshoot is over
        clock.advance(0.01)
    width = queue.width
    for job in queue.underway():
        job.cancel()
    for _ in range(20):
        clock.advance(0.01)
    decisions = [e for e in seen if isinstance(e, ControlDecision)]
    assert not any(d.reason in ("drop", "pace") for d in decisions)
    assert queue.width >= width
    controller.detach()


def test_no_growth_while_app_limited() -> None:
    """A trickle of work: at most a few jobs underway, so the width must not
    grow just because nothing went wrong."""
    clock = Clock()
    server = CapacityServer(clock, 100, BASE)
    queue = ResizableDispatchQueue(server, width=4, clock=clock)
    controller = AdaptiveController(max_width=500, initial=4)
    controller.attach(queue)
    for i in range(2000):  # one job every 5 ms: about 2 underway
        clock.callLater(i * 0.005, queue.put, i)
    for _ in range(1100):
        clock.advance(0.01)
    assert queue.width <= 8
    controller.detach()


def test_a_single_drop_cuts_once_and_does_not_pace() -> None:
    """One reset at steady state: one cut, no pace (a pace needs drops that
    persist after a cut), and throughput is back within a second."""
    result = simulate(
        lambda clock: CapacityServer(
            clock, 20, BASE, bursts=[Burst(5.003, 5.0051, "reset")]
        ),
        AdaptiveController(max_width=200),
        jobs=30_000,
    )
    reasons = [d.reason for d in result.decisions if 5 <= d.time < 7]
    assert reasons.count("drop") == 1
    assert "pace" not in reasons
    assert result.throughput(6, 8) >= 0.9 * IDEAL


def test_per_lane_state_is_dropped_when_a_lane_goes_idle() -> None:
    """A lane's controller state (and its width override in the queue) goes
    once the lane has been idle for ``idle_after``: a million hosts seen once
    cost nothing afterwards."""
    clock = Clock()
    server = CapacityServer(clock, 8, BASE)
    queue = ResizableDispatchQueue(server, width=50, clock=clock)
    events: list[Any] = []
    queue.subscribe(events.append)
    controller = AdaptiveController(max_width=50, per_lane=True, idle_after=1.0)
    controller.attach(queue)
    for i in range(300):
        queue.put(i, key="a")
    clock.advance(0)
    for _ in range(50):
        clock.advance(0.01)
    states = controller.scopes()
    assert [(s.key, s.reason) for s in states] == [("a", "state")]
    assert any(
        e.key == "a" and e.lane for e in events if type(e).__name__ == "WidthChanged"
    )
    for _ in range(400):  # the work ends, then a second and more of quiet
        clock.advance(0.01)
    assert controller.scopes() == []
    controller.detach()
    # The queue kept nothing of it: a new job in lane "a" gets the default.
    queue.put("late", key="a")
    assert [(info.key, info.width) for info in queue.lanes()] == [("a", None)]
