"""The API adapter: call a JSON REST API as fetchq jobs, within its quota.

::

    from twisted.internet import reactor
    from fetchq import ResizableDispatchQueue
    from fetchq.api import ApiCaller, ApiConfig, BadRequestRow, api_retry_policy

    config = ApiConfig(
        base_url="https://api.x.com",
        path="/2/users/{id}/tweets",
        token=token,                       # a fetchq.recipe.Secret, or text
        params={"max_results": "100"},
        max_pages=5,                       # follow meta.next_token
        records="item",
    )
    caller = ApiCaller(config, reactor)
    queue = ResizableDispatchQueue(
        caller, 10, clock=reactor, retry=api_retry_policy()
    )
    caller.bind(queue)                     # the caller holds its lane

    for n, row in enumerate(rows):
        try:
            request = caller.first_page(row, id=n)
        except BadRequestRow as e:         # bad input is recorded, not sent
            record(row, error=e.name, message=str(e))
        else:
            queue.put(request, key=caller.lane_key(request))

Each finished job's result is an :class:`ApiPage`: ``page.records()`` are its
output records, and ``page.next_request()`` is the next page's request (put
it with the same lane key), or None.  ``ApiConfig.pagination`` says how the
next page is found: a body token (X), the ``Link`` header (GitHub), a next
URL in the body (Twilio), a page number or an offset (see
:mod:`fetchq.api.pages`).

**Lanes.** An endpoint (method and path template) is one lane, because that
is what a quota counts.  The caller reads the quota from every answer (X's
``x-rate-limit-*``, GitHub's ``X-RateLimit-*``, the IETF ``RateLimit``
fields; see :mod:`fetchq.api.ratelimit`) and holds the lane until the reset
when it is spent, so a server that announces its quota never has to say 429.
A 429 (or a GitHub secondary-limit 403) holds the lane for Retry-After or
until the reset, and the job runs again then.

**Outcomes.** A job ends with an :class:`ApiPage` or one of the named errors
of :mod:`fetchq.api.errors`, each with ``.name``, ``.signal`` and a short
message.
"""

from fetchq.api.budget import Admission, Budget, LocalBudget, QuotaBudget
from fetchq.api.caller import (
    RETRYABLE,
    ApiCaller,
    ApiPage,
    ApiRequest,
    ApiStats,
    api_retry_policy,
)
from fetchq.api.config import ApiConfig, Template
from fetchq.api.errors import (
    ApiAuthFailed,
    ApiBadResponse,
    ApiConnectionFailed,
    ApiError,
    ApiServerError,
    ApiStatusError,
    ApiThrottled,
    ApiTimeout,
    BadRequestRow,
    QuotaExhausted,
)
from fetchq.api.pages import STYLES, Link, parse_links, same_origin
from fetchq.api.ratelimit import (
    EPOCH_THRESHOLD,
    Quota,
    parse_quota,
    reset_time,
    throttle_delay,
)

__all__ = [
    "EPOCH_THRESHOLD",
    "RETRYABLE",
    "STYLES",
    "Admission",
    "ApiAuthFailed",
    "ApiBadResponse",
    "ApiCaller",
    "ApiConfig",
    "ApiConnectionFailed",
    "ApiError",
    "ApiPage",
    "ApiRequest",
    "ApiServerError",
    "ApiStats",
    "ApiStatusError",
    "ApiThrottled",
    "ApiTimeout",
    "BadRequestRow",
    "Budget",
    "Link",
    "LocalBudget",
    "Quota",
    "QuotaBudget",
    "QuotaExhausted",
    "Template",
    "api_retry_policy",
    "parse_links",
    "parse_quota",
    "reset_time",
    "same_origin",
    "throttle_delay",
]
