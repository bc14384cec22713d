"""Tests for :class:`fetchq.pool.DeferredPool`."""

from __future__ import annotations

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from fetchq.pool import DeferredPool


class BoomError(Exception):
    """The failure used by these tests."""


class NotifyWhenEmptyTests(SynchronousTestCase):
    """notify_when_empty() and when its Deferreds fire."""

    def test_empty_notify_fires_at_once(self) -> None:
        """On an empty pool, notify_when_empty() has already fired with None."""
        pool = DeferredPool()
        self.assertIsNone(self.successResultOf(pool.notify_when_empty()))
        self.assertEqual(pool.status(), (0, 0))

    def test_empty_notify_without_test_immediately_waits(self) -> None:
        """
        With test_immediately=False an empty pool's notification waits for the
        pool to become empty again after something is added.
        """
        pool = DeferredPool()
        done = pool.notify_when_empty(test_immediately=False)
        self.assertNoResult(done)
        self.assertEqual(pool.status(), (0, 1))
        d: Deferred[int] = pool.add(Deferred())
        self.assertNoResult(done)
        d.callback(1)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.successResultOf(d), 1)

    def test_fires_after_all_succeed(self) -> None:
        """The notification fires only once every added Deferred has fired."""
        pool = DeferredPool()
        first: Deferred[str] = pool.add(Deferred())
        second: Deferred[str] = pool.add(Deferred())
        done = pool.notify_when_empty()
        self.assertNoResult(done)
        first.callback("a")
        self.assertNoResult(done)
        self.assertEqual(len(pool), 1)
        second.callback("b")
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(len(pool), 0)
        self.assertEqual(self.successResultOf(first), "a")
        self.assertEqual(self.successResultOf(second), "b")

    def test_fires_after_failure(self) -> None:
        """
        A Deferred that fails counts as fired, and its failure still reaches
        the caller's errback.
        """
        pool = DeferredPool()
        d: Deferred[str] = pool.add(Deferred())
        done = pool.notify_when_empty()
        d.errback(BoomError())
        self.assertIsNone(self.successResultOf(done))
        self.failureResultOf(d, BoomError)

    def test_mixed_success_and_failure(self) -> None:
        """
        With one success and one failure outstanding, the notification waits
        for both, and the caller's callback and errback each see their own.
        """
        pool = DeferredPool()
        ok: Deferred[str] = pool.add(Deferred())
        bad: Deferred[str] = pool.add(Deferred())
        results: list[str] = []
        failures: list[Failure] = []
        ok.addCallback(results.append)
        bad.addErrback(failures.append)
        done = pool.notify_when_empty()
        bad.errback(BoomError("bad"))
        self.assertNoResult(done)
        self.assertEqual(len(failures), 1)
        self.assertTrue(failures[0].check(BoomError))
        ok.callback("fine")
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(results, ["fine"])

    def test_multiple_waiters(self) -> None:
        """Every waiting notification fires when the pool becomes empty."""
        pool = DeferredPool()
        d: Deferred[None] = pool.add(Deferred())
        waiters = [pool.notify_when_empty() for _ in range(3)]
        waiters.append(pool.notify_when_empty(test_immediately=False))
        self.assertEqual(pool.status(), (1, 4))
        for waiter in waiters:
            self.assertNoResult(waiter)
        d.callback(None)
        for waiter in waiters:
            self.assertIsNone(self.successResultOf(waiter))
        self.assertEqual(pool.status(), (0, 0))

    def test_cancel_waiter(self) -> None:
        """
        Cancelling a notification fails it with CancelledError and removes it;
        the other notifications still fire.
        """
        pool = DeferredPool()
        d: Deferred[None] = pool.add(Deferred())
        cancelled = pool.notify_when_empty()
        kept = pool.notify_when_empty()
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        self.assertEqual(pool.status(), (1, 1))
        d.callback(None)
        self.assertIsNone(self.successResultOf(kept))
        self.assertEqual(pool.status(), (0, 0))

    def test_cancel_does_not_affect_tracked(self) -> None:
        """Cancelling a notification leaves the tracked Deferreds alone."""
        pool = DeferredPool()
        d: Deferred[int] = pool.add(Deferred())
        waiter = pool.notify_when_empty()
        waiter.cancel()
        self.failureResultOf(waiter, CancelledError)
        self.assertNoResult(d)
        self.assertEqual(len(pool), 1)
        d.callback(7)
        self.assertEqual(self.successResultOf(d), 7)

    def test_cancel_after_fire_is_harmless(self) -> None:
        """Cancelling a notification that already fired changes nothing."""
        pool = DeferredPool()
        done = pool.notify_when_empty()
        done.cancel()
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(pool.status(), (0, 0))

    def test_add_after_empty(self) -> None:
        """
        After the pool empties, new work starts a new round: a fresh
        notification waits for it, and a fired one is not fired again.
        """
        pool = DeferredPool()
        first: Deferred[None] = pool.add(Deferred())
        early = pool.notify_when_empty()
        first.callback(None)
        self.assertIsNone(self.successResultOf(early))
        second: Deferred[None] = pool.add(Deferred())
        late = pool.notify_when_empty()
        self.assertNoResult(late)
        self.assertEqual(pool.status(), (1, 1))
        second.callback(None)
        self.assertIsNone(self.successResultOf(late))

    def test_waiter_may_add_work(self) -> None:
        """A notification's callback can add new work to the pool."""
        pool = DeferredPool()
        d: Deferred[None] = pool.add(Deferred())
        follow_up: Deferred[None] = Deferred()
        pool.notify_when_empty().addCallback(lambda _: pool.add(follow_up))
        d.callback(None)
        self.assertEqual(len(pool), 1)
        done = pool.notify_when_empty()
        self.assertNoResult(done)
        follow_up.callback(None)
        self.assertIsNone(self.successResultOf(done))

    def test_camel_case_alias(self) -> None:
        """notifyWhenEmpty behaves as notify_when_empty, positionally too."""
        pool = DeferredPool()
        self.assertIsNone(self.successResultOf(pool.notifyWhenEmpty()))
        waiter = pool.notifyWhenEmpty(False)
        self.assertNoResult(waiter)
        pool.add(succeed(None))
        self.assertIsNone(self.successResultOf(waiter))

    def test_camel_case_alias_takes_txrdq_keyword(self) -> None:
        """
        notifyWhenEmpty(testImmediately=...) works as in txrdq: True on an
        empty pool has fired, False waits for the next emptying; the
        snake_case keyword is accepted too.
        """
        pool = DeferredPool()
        self.assertIsNone(
            self.successResultOf(pool.notifyWhenEmpty(testImmediately=True))
        )
        late = pool.notifyWhenEmpty(testImmediately=False)
        also_late = pool.notifyWhenEmpty(test_immediately=False)
        self.assertEqual(pool.status(), (0, 2))
        d: Deferred[None] = Deferred()
        pool.add(d)
        self.assertNoResult(late)
        d.callback(None)
        self.assertIsNone(self.successResultOf(late))
        self.assertIsNone(self.successResultOf(also_late))
        self.assertEqual(pool.status(), (0, 0))


class AddTests(SynchronousTestCase):
    """add(), len() and status()."""

    def test_add_returns_same_deferred(self) -> None:
        """add() returns the very Deferred it was given."""
        pool = DeferredPool()
        d: Deferred[int] = Deferred()
        self.assertIs(pool.add(d), d)
        d.callback(1)
        self.assertEqual(self.successResultOf(d), 1)

    def test_results_pass_through(self) -> None:
        """Callbacks added after add() see the result unchanged."""
        pool = DeferredPool()
        result = {"key": [1, 2]}
        d: Deferred[dict[str, list[int]]] = pool.add(Deferred())
        d.callback(result)
        self.assertIs(self.successResultOf(d), result)

    def test_earlier_callbacks_still_apply(self) -> None:
        """Callbacks added before add() still shape the result the caller sees."""
        pool = DeferredPool()
        d: Deferred[int] = Deferred()
        d.addCallback(lambda n: n * 10)
        pool.add(d)
        d.callback(4)
        self.assertEqual(self.successResultOf(d), 40)
        self.assertEqual(len(pool), 0)

    def test_failure_passes_through(self) -> None:
        """The failure the caller's errback sees is the very one fired."""
        pool = DeferredPool()
        d: Deferred[int] = pool.add(Deferred())
        error = BoomError("exact")
        d.errback(error)
        self.assertIs(self.failureResultOf(d, BoomError).value, error)

    def test_len_and_status(self) -> None:
        """len() and status() count outstanding Deferreds and waiters."""
        pool = DeferredPool()
        self.assertEqual(len(pool), 0)
        first: Deferred[None] = pool.add(Deferred())
        second: Deferred[None] = pool.add(Deferred())
        self.assertEqual(len(pool), 2)
        waiter = pool.notify_when_empty()
        self.assertEqual(pool.status(), (2, 1))
        first.callback(None)
        self.assertEqual(pool.status(), (1, 1))
        second.errback(BoomError())
        self.failureResultOf(second, BoomError)
        self.assertEqual(pool.status(), (0, 0))
        self.assertIsNone(self.successResultOf(waiter))

    def test_add_already_fired(self) -> None:
        """
        A Deferred that has already fired leaves the pool at once, with its
        result intact, and releases waiting notifications.
        """
        pool = DeferredPool()
        waiter = pool.notify_when_empty(test_immediately=False)
        d = pool.add(succeed("done"))
        self.assertEqual(len(pool), 0)
        self.assertIsNone(self.successResultOf(waiter))
        self.assertEqual(self.successResultOf(d), "done")

    def test_add_same_deferred_twice(self) -> None:
        """Adding an outstanding Deferred again tracks it only once."""
        pool = DeferredPool()
        d: Deferred[str] = Deferred()
        pool.add(d)
        pool.add(d)
        self.assertEqual(len(pool), 1)
        done = pool.notify_when_empty()
        d.callback("x")
        self.assertEqual(len(pool), 0)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(self.successResultOf(d), "x")
