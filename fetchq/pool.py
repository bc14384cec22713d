"""A pool of Deferreds that tells you when none are outstanding.

:class:`DeferredPool` follows the ``DeferredPool`` of the txrdq package: add
Deferreds to it as work starts, and ask it for a Deferred that fires once all
of them have fired, for example to wait for in-flight work before shutting
down.
"""

from __future__ import annotations

from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed

__all__ = ["DeferredPool"]

T = TypeVar("T")
_R = TypeVar("_R")


class DeferredPool:
    """Track Deferreds until they fire, and report when none are left.

    A Deferred passed to :meth:`add` is outstanding until it fires, with a
    result or a failure. The pool only watches: whatever the Deferred fires
    with is passed on unchanged to the callbacks added after it.

    Example::

        pool = DeferredPool()
        first = pool.add(Deferred())
        second = pool.add(Deferred())
        done = pool.notify_when_empty()  # has not fired: two outstanding
        first.callback("a")
        second.callback("b")  # pool is empty: done fires with None

    ``notifyWhenEmpty(testImmediately=True)`` is :meth:`notify_when_empty`
    under its txrdq name and keyword, kept for code written against txrdq's
    ``DeferredPool``.
    """

    def __init__(self) -> None:
        """Create an empty pool."""
        self._pool: set[Deferred[Any]] = set()
        self._waiters: list[Deferred[None]] = []

    def __len__(self) -> int:
        """Return the number of outstanding Deferreds.

        Returns:
            How many added Deferreds have not fired yet.
        """
        return len(self._pool)

    def add(self, d: Deferred[T]) -> Deferred[T]:
        """Track a Deferred until it fires.

        A callback/errback pair is added to ``d`` that removes it from the
        pool and returns its result or failure unchanged, so the caller's
        own callbacks and errbacks still see it. If ``d`` has already fired,
        it leaves the pool at once, which counts as the pool becoming empty
        if nothing else is outstanding. Adding a Deferred that is already
        outstanding does nothing.

        Args:
            d: The Deferred to track.

        Returns:
            ``d`` itself, so the call can be chained.
        """
        if d not in self._pool:
            self._pool.add(d)
            d.addBoth(self._fired, d)
        return d

    def notify_when_empty(self, test_immediately: bool = True) -> Deferred[None]:
        """Get a Deferred that fires when the pool becomes empty.

        Cancelling the returned Deferred, before it fires, withdraws it; it
        then fails with :class:`~twisted.internet.defer.CancelledError`.

        Args:
            test_immediately: If ``True`` (the default) and nothing is
                outstanding now, the returned Deferred has already fired.
                If ``False``, it waits for the next time the pool becomes
                empty, that is, for some Deferred to be added and for every
                outstanding one to fire.

        Returns:
            A Deferred that fires with ``None``.
        """
        if test_immediately and not self._pool:
            return succeed(None)
        d: Deferred[None] = Deferred(canceller=self._cancel_waiter)
        self._waiters.append(d)
        return d

    def notifyWhenEmpty(
        self,
        testImmediately: bool = True,  # noqa: N803 (txrdq's keyword)
        *,
        test_immediately: bool | None = None,
    ) -> Deferred[None]:
        """:meth:`notify_when_empty` under txrdq's name; takes txrdq's
        ``testImmediately`` keyword as well as ``test_immediately``."""
        if test_immediately is None:
            return self.notify_when_empty(testImmediately)
        return self.notify_when_empty(test_immediately)

    def status(self) -> tuple[int, int]:
        """Report how busy the pool is.

        Returns:
            A pair: the number of outstanding Deferreds, and the number of
            :meth:`notify_when_empty` Deferreds waiting to fire.
        """
        return len(self._pool), len(self._waiters)

    def _fired(self, result: _R, d: Deferred[Any]) -> _R:
        """Drop a fired Deferred, notify waiters if the pool is now empty."""
        self._pool.discard(d)
        if not self._pool:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
        return result

    def _cancel_waiter(self, d: Deferred[None]) -> None:
        """Withdraw a :meth:`notify_when_empty` Deferred being cancelled."""
        self._waiters.remove(d)
