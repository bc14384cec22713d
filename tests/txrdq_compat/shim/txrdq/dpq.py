"""``txrdq.dpq``: fetchq's DeferredPriorityQueue."""

from fetchq.dpq import DeferredPriorityQueue

__all__ = ["DeferredPriorityQueue"]

# txrdq's test_dpq.py imports txrdq's private heap-entry class along with the
# queue.  fetchq has no such class (its heap entries are tuples), so the name
# is bound to None only to let the module import; the two tests that build
# one (TestTask) are on the suite's allow-list.
_Task = None
