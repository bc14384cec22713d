"""Limits, control and quotas shared by many processes through Redis.

- :class:`SharedLimits`: attach it to any
  :class:`~fetchq.ResizableDispatchQueue`, in as many processes as you like:
  one global width, one global rate, and lanes whose width, rate and holds
  count every process's jobs.
"""

from fetchq.shared.limits import SharedLimits

__all__ = ["SharedLimits"]
