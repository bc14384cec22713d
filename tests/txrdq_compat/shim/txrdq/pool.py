"""``txrdq.pool``: fetchq's DeferredPool."""

from fetchq.pool import DeferredPool

__all__ = ["DeferredPool"]
