"""The typed configuration a recipe becomes.

These are plain frozen values: the loader (:mod:`fetchq.recipe.loader`) builds
them once, after checking everything, so code that receives one can trust
every field.  Durations are seconds (float), sizes bytes (int), rates
launches per second (float), paths absolute.  Values that came from the
environment are :class:`~fetchq.recipe.env.Secret` values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TypedDict

import attrs
from twisted.python.failure import Failure

from fetchq.recipe.env import Secret, reveal
from fetchq.retry import RetryPolicy

__all__ = [
    "BodyName",
    "Durability",
    "FetchRecipe",
    "FetchSpec",
    "InputFormat",
    "InputSpec",
    "LaneSpec",
    "OutputSpec",
    "QueueKwargs",
    "QueueSpec",
    "Recipe",
    "RetrySpec",
    "SaveBodiesSpec",
    "StateSpec",
    "StatusSet",
]

InputFormat = Literal["lines", "jsonl", "csv"]
Durability = Literal["normal", "full"]
BodyName = Literal["sha256", "id"]


class StatusSet(frozenset[int]):
    """A set of HTTP statuses whose ``repr()`` is compact: ``StatusSet('2xx, 304')``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"StatusSet({self.describe()!r})"

    def describe(self) -> str:
        """The statuses as a recipe would write them: ``"2xx, 304, 500-504"``."""
        parts: list[str] = []
        ordered = sorted(self)
        start = 0
        while start < len(ordered):
            end = start
            while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
                end += 1
            low, high = ordered[start], ordered[end]
            if low % 100 == 0 and high == low + 99:
                parts.append(f"{low // 100}xx")
            elif low == high:
                parts.append(str(low))
            else:
                parts.append(f"{low}-{high}")
            start = end + 1
        return ", ".join(parts)


@attrs.frozen
class InputSpec:
    """Where the work comes from.

    Attributes:
        path: the input file (absolute).
        format: ``lines`` (one URL a line), ``jsonl`` or ``csv`` (rows).
        url_field: the field or column holding the URL (rows only).
        priority_field: the field holding a job's priority, if any.
        id_field: the field holding a job's stable identity, if any.
    """

    path: Path
    format: InputFormat
    url_field: str
    priority_field: str | None
    id_field: str | None


@attrs.frozen
class OutputSpec:
    """Where results go: one JSON line per input item.

    Attributes:
        path: the JSONL output file (absolute).
    """

    path: Path


@attrs.frozen
class StateSpec:
    """The durable state that lets a run resume.

    Attributes:
        path: the SQLite file (absolute).
        durability: ``normal`` (batched commits) or ``full`` (fsync each).
    """

    path: Path
    durability: Durability


@attrs.frozen
class LaneSpec:
    """Limits applied to each lane (for fetching: each host) on its own.

    Attributes:
        width: most jobs underway in one lane (None: no per-lane cap).
        rate: most launches per second in one lane (None: unlimited).
        burst: launches a lane's rate allows back to back.
    """

    width: int | None
    rate: float | None
    burst: int


class QueueKwargs(TypedDict):
    """Keyword arguments for :class:`~fetchq.queue.ResizableDispatchQueue`."""

    width: int
    rate: float | None
    burst: int
    lane_width: int | None
    lane_rate: float | None
    lane_burst: int


@attrs.frozen
class AdaptiveSpec:
    """Adaptive width: a controller sets the width from latency and drops.

    Attributes:
        algorithm: ``default``, ``gradient`` or ``aimd``.
        min_width: the width never goes below this.
        max_width: ... nor above this.
        per_lane: steer each lane (host, sender, endpoint) on its own instead
            of the whole queue.
        pace: pace launches when drops persist at the least useful width.
        interval: seconds between decisions.
        probe_every: seconds between re-measurements of the latency baseline.
    """

    algorithm: str
    min_width: int
    max_width: int
    per_lane: bool
    pace: bool
    interval: float
    probe_every: float


@attrs.frozen
class QueueSpec:
    """The pace of the whole run.

    Attributes:
        width: most jobs underway at once.
        rate: most launches per second overall (None: unlimited).
        burst: launches the rate allows back to back.
        lanes: limits for each lane on its own (a host, a sender number, an
            API endpoint: the recipe's kind says which).
        adaptive: the adaptive controller's settings, or None for a fixed
            width.
    """

    width: int
    rate: float | None
    burst: int
    lanes: LaneSpec
    adaptive: AdaptiveSpec | None = None

    def queue_kwargs(self) -> QueueKwargs:
        """These settings as ``ResizableDispatchQueue`` keyword arguments::

        ResizableDispatchQueue(func, **recipe.queue.queue_kwargs(), retry=...)
        """
        return QueueKwargs(
            width=self.width,
            rate=self.rate,
            burst=self.burst,
            lane_width=self.lanes.width,
            lane_rate=self.lanes.rate,
            lane_burst=self.lanes.burst,
        )


@attrs.frozen
class RetrySpec:
    """How failed attempts are retried.

    Attributes:
        max_attempts: most attempts per job (1: no retries).
        base_delay: backoff before the second attempt, before jitter (seconds).
        max_delay: the backoff cap (seconds).
    """

    max_attempts: int
    base_delay: float
    max_delay: float

    def policy(
        self,
        *,
        retry_on: tuple[type[BaseException], ...] = (),
        retry_if: Callable[[Failure], bool] | None = None,
    ) -> RetryPolicy:
        """A :class:`~fetchq.retry.RetryPolicy` with these numbers; the adapter
        says which failures are retryable (``retry_on``/``retry_if``)."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            base_delay=self.base_delay,
            max_delay=self.max_delay,
            retry_on=retry_on,
            retry_if=retry_if,
        )


@attrs.frozen
class SaveBodiesSpec:
    """Where response bodies are saved.

    Attributes:
        dir: the directory (absolute; created when the run starts).
        name: file names by ``sha256`` of the body or by job ``id``.
    """

    dir: Path
    name: BodyName


@attrs.frozen
class FetchSpec:
    """How each URL is fetched and what its response means.

    Attributes:
        method: the HTTP method, upper case.
        headers: request headers; values from the environment or under
            sensitive names (Authorization, Cookie, ...) are ``Secret``.
        params: query parameters added to every URL.
        body: the request body, if any.
        connect_timeout: seconds to establish a connection.
        headers_timeout: seconds from sending to the response headers.
        body_timeout: seconds for the whole body to arrive.
        max_body: most bytes of (decoded) body accepted.
        max_redirects: redirects followed (0: none).
        allow_private: whether private and loopback addresses may be fetched.
        ok_statuses: statuses that count as success.
        retry_statuses: statuses retried with backoff.
        throttle_statuses: statuses that mean "slow down": retried after
            ``Retry-After`` and the host's lane held meanwhile.
        save_bodies: where to save bodies (None: record size and sha256 only).
    """

    method: str
    headers: Mapping[str, str | Secret]
    params: Mapping[str, str | Secret]
    body: str | Secret | None
    connect_timeout: float
    headers_timeout: float
    body_timeout: float
    max_body: int
    max_redirects: int
    allow_private: bool
    ok_statuses: StatusSet
    retry_statuses: StatusSet
    throttle_statuses: StatusSet
    save_bodies: SaveBodiesSpec | None

    def header_items(self) -> list[tuple[str, str]]:
        """The headers with secrets revealed, for the code that sends them."""
        return [(name, reveal(value)) for name, value in self.headers.items()]

    def param_items(self) -> list[tuple[str, str]]:
        """The query parameters with secrets revealed."""
        return [(name, reveal(value)) for name, value in self.params.items()]


@attrs.frozen
class FetchRecipe:
    """A ``kind: fetch`` recipe: fetch every URL of the input.

    Attributes:
        source: the recipe file (absolute).
        kind: always ``"fetch"``.
        input: where the URLs come from.
        output: where results go.
        state: the durable state file.
        queue: width and rates.
        retry: the retry policy's numbers.
        fetch: how to fetch and classify responses.
    """

    source: Path
    kind: Literal["fetch"]
    input: InputSpec
    output: OutputSpec
    state: StateSpec
    queue: QueueSpec
    retry: RetrySpec
    fetch: FetchSpec


Recipe = FetchRecipe
"""Any recipe :func:`~fetchq.recipe.load_recipe` returns.  Only ``fetch`` exists
so far; with ``sms`` and ``api`` this becomes a union discriminated by ``kind``."""
