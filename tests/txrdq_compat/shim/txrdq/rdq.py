"""``txrdq.rdq``: fetchq's queue and its QueueStopped."""

from fetchq.errors import QueueStopped
from fetchq.queue import ResizableDispatchQueue

__all__ = ["QueueStopped", "ResizableDispatchQueue"]
