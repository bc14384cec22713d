"""A site behind a per-client request-rate limit that refuses with 429 and no
Retry-After, as nginx's ``limit_req ... nodelay`` does, on its own clock.

:class:`LeakySite` is a ``twisted.web`` resource: the same leaky bucket as
:class:`fetchq.control.models.LeakyBucketServer` (it admits ``burst + 1``
back to back, then one per ``1 / rate``; a refusal leaves the bucket as it
was), kept on the reactor it is served from, so a client on the same
machine meets it exactly as it would meet the real thing over loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.web.resource import Resource

from fetchq.control.models import LeakyBucketServer


class LeakySite(Resource):
    """Every GET is 200 with a small body while the bucket admits it, else
    429 with no Retry-After.

    Args:
        clock: the server's clock (the reactor it is served from).
        rate: requests per second the bucket drains.
        burst: requests above the rate it lets through at once.

    Attributes:
        served: answers by status.
    """

    isLeaf = True

    def __init__(self, clock: Any, rate: float, burst: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.clock = clock
        self.bucket = LeakyBucketServer(clock, rate, burst)
        self.served: dict[int, int] = {}

    def render_GET(self, request: Any) -> bytes:
        """Answer at once: 200, or 429 without Retry-After."""
        status = 200 if self.bucket.admit(self.clock.seconds()) else 429
        self.served[status] = self.served.get(status, 0) + 1
        request.setResponseCode(status)
        return b"ok\n" if status == 200 else b"slow down\n"
