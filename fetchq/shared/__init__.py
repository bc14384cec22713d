"""Limits, control and quotas shared by many processes through Redis.

Everything here lives under a run's hash tag (``{fetchq:NAME}:``) next to
what :class:`~fetchq.store.redis.RedisStore` keeps, and reads the limits
through the same Lua: a lane, a hold and a rate mean one thing whether a
:class:`~fetchq.shared_run.SharedRun` claims rows or a queue asks for a slot.

- :class:`SharedLimits`: attach it to any
  :class:`~fetchq.ResizableDispatchQueue`, in as many processes as you like:
  one global width, one global rate, and lanes whose width, rate and holds
  count every process's jobs.
- :class:`SharedControl`: the adaptive controller of a shared run: one
  leader, elected by lease and fenced by epoch, decides from every worker's
  signals and sets the run's limits.
- :class:`RedisBudget`: an API endpoint's quota budget (remaining, reset,
  requests in flight) kept for every worker at once.
"""

from fetchq.shared.control import RemoteQueue, SharedControl, SignalPublisher
from fetchq.shared.limits import SharedLimits
from fetchq.shared.quota import RedisBudget

__all__ = [
    "RedisBudget",
    "RemoteQueue",
    "SharedControl",
    "SharedLimits",
    "SignalPublisher",
]
