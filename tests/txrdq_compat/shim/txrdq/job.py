"""``txrdq.job``: fetchq's Job."""

from fetchq.job import Job

__all__ = ["Job"]
