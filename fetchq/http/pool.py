"""A persistent connection pool whose idle connections are bounded across
hosts, and what running out of file descriptors looks like.

Twisted's ``HTTPConnectionPool`` keeps up to ``maxPersistentPerHost`` idle
connections *per host*, with no cap over all hosts: a crawl of 15,000
distinct hosts keeps 15,000 sockets open, until the process hits its
descriptor limit (``ulimit -n``) and every new connection fails with
``EMFILE``.  :class:`BoundedPool` keeps the per-host cap and adds a total
one, :attr:`~BoundedPool.max_idle`: when a connection goes idle beyond it,
the least recently used idle connection (of any host) is closed.  So a
process holds at most ``max_idle`` idle connections plus the ones in use
(at most the queue's width), whatever the number of hosts.
:meth:`~BoundedPool.close_idle` closes a host's idle connections at once,
for a caller that knows the host has nothing more pending.

:func:`default_max_idle` derives the cap from the pool size (the queue's
width) and the descriptor limit; :func:`out_of_descriptors` tells an
``EMFILE``/``ENFILE`` failure from any other connection error, and
:func:`descriptors_exhausted` checks for the state itself when a failure
hides its cause.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.web.client import HTTPConnectionPool

__all__ = [
    "BoundedPool",
    "default_max_idle",
    "descriptor_limit",
    "descriptors_exhausted",
    "out_of_descriptors",
]

_NO_DESCRIPTORS = frozenset({errno.EMFILE, errno.ENFILE})
_RESERVED_DESCRIPTORS = 64  # stdio, the reactor, the store, output, logs ...


def descriptor_limit() -> int | None:
    """The process's soft limit on open file descriptors, or None if there
    is none (or the platform cannot tell)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def default_max_idle(pool_size: int, limit: int | None = None) -> int:
    """The default cap on idle connections over all hosts.

    Twice ``pool_size`` (so a single host at full width keeps every
    connection warm, with room for a second), but never more than leaves
    half the descriptor limit, less a reserve, to the rest of the process
    once ``pool_size`` connections are busy; at least 1.

    Args:
        pool_size: connections in use at once (the queue's width).
        limit: the descriptor limit (default: the process's soft limit).
    """
    if limit is None:
        limit = descriptor_limit()
    cap = 2 * pool_size
    if limit is not None:
        cap = min(cap, (limit - _RESERVED_DESCRIPTORS) // 2 - pool_size)
    return max(1, cap)


def out_of_descriptors(error: BaseException) -> bool:
    """Whether ``error`` says the process (EMFILE) or the system (ENFILE)
    has no file descriptor left, as Twisted reports it when it cannot make
    a socket (``ConnectBindError: Couldn't bind: 24: Too many open files``)
    or as an ``OSError``."""
    code = getattr(error, "osError", None)
    if code is None and isinstance(error, OSError):
        code = error.errno
    if code in _NO_DESCRIPTORS:
        return True
    return "Too many open files" in str(error)


def descriptors_exhausted() -> bool:
    """Whether this process cannot open one more file descriptor now.

    For failures that hide their cause: Twisted's resolver turns a
    ``getaddrinfo`` that could not open ``/etc/hosts`` or a DNS socket into
    "no addresses", which would read as a DNS failure of the URL.
    """
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as e:
        return e.errno in _NO_DESCRIPTORS
    os.close(fd)
    return False


class BoundedPool(HTTPConnectionPool):
    """An ``HTTPConnectionPool`` (persistent) that keeps at most
    ``max_idle`` idle connections in all, closing the least recently used
    beyond that.

    Args:
        reactor: the reactor (``IReactorTime`` for idle timeouts).
        per_host: idle connections kept per host (``maxPersistentPerHost``).
        max_idle: idle connections kept over all hosts.

    Raises:
        ValueError: if either bound is not an integer >= 1.
    """

    def __init__(self, reactor: Any, per_host: int, max_idle: int) -> None:
        for name, value in (("per_host", per_host), ("max_idle", max_idle)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, not {value!r}")
        super().__init__(reactor, persistent=True)  # type: ignore[no-untyped-call]
        self.maxPersistentPerHost = per_host
        self.max_idle = max_idle
        # Every idle connection, least recently put back first, with its key.
        self._idle: OrderedDict[Any, Hashable] = OrderedDict()

    @property
    def idle(self) -> int:
        """How many idle connections the pool holds now."""
        return len(self._idle)

    def idle_keys(self) -> list[Hashable]:
        """The keys (``(scheme, host, port)``) with idle connections."""
        return list(self._connections)

    def getConnection(self, key: Hashable, endpoint: Any) -> Deferred[Any]:
        """A pooled connection for ``key`` if one is idle, else a new one
        (``HTTPConnectionPool.getConnection``)."""
        connections = self._connections.get(key)
        if connections:
            # Twisted's getConnection takes the first quiescent connection
            # and drops the ones before it: forget them all here first.
            for connection in connections:
                self._idle.pop(connection, None)
                if connection.state == "QUIESCENT":
                    break
        d: Deferred[Any] = super().getConnection(key, endpoint)
        if connections is not None and not connections:
            del self._connections[key]  # no list kept per host ever seen
        return d

    def _putConnection(self, key: Hashable, connection: Any) -> None:
        connections = self._connections.get(key)
        if connections is not None and len(connections) >= self.maxPersistentPerHost:
            self._idle.pop(connections[0], None)  # Twisted drops the oldest
        super()._putConnection(key, connection)  # type: ignore[no-untyped-call]
        if connection not in self._timeouts:
            return  # not put back (it was not quiescent)
        self._idle[connection] = key
        while len(self._idle) > self.max_idle:
            oldest, its_key = self._idle.popitem(last=False)
            self._close(its_key, oldest)

    def _removeConnection(self, key: Hashable, connection: Any) -> None:
        # An idle connection's timeout (cachedConnectionTimeout) passed.
        self._idle.pop(connection, None)
        super()._removeConnection(key, connection)  # type: ignore[no-untyped-call]
        if not self._connections.get(key, True):
            del self._connections[key]

    def _close(self, key: Hashable, connection: Any) -> None:
        """Close one idle connection and forget it."""
        self._timeouts.pop(connection).cancel()
        connections = self._connections[key]
        connections.remove(connection)
        if not connections:
            del self._connections[key]
        connection.transport.loseConnection()

    def close_idle(self, match: Callable[[Hashable], bool]) -> int:
        """Close the idle connections of every key ``match`` accepts.

        Returns:
            How many connections were closed.
        """
        closed = 0
        for key in [k for k in self._connections if match(k)]:
            for connection in list(self._connections.get(key, ())):
                self._idle.pop(connection, None)
                self._close(key, connection)
                closed += 1
        return closed

    def closeCachedConnections(self) -> Deferred[None]:
        """Close every idle connection (``HTTPConnectionPool``'s method);
        fires once they are closed."""
        self._idle.clear()
        d: Deferred[None] = super().closeCachedConnections()  # type: ignore[no-untyped-call]
        return d
