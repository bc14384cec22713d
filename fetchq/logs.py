"""fetchq's log: Twisted's logging, started, as human lines or JSON.

Twisted's logger drops every event until logging begins; ``fetchq run``
begins it with :func:`start_logging`:

- ``human`` (the default): one line per event, ``TIME LEVEL [where] text``;
- ``json``: one JSON object per line (``time``, ``level``, ``namespace``,
  ``event``, ``message``, and the event's own simple fields), to stderr or
  a file, for a log shipper.

fetchq's own events (namespaces ``fetchq...``) are logged from ``info`` up,
everyone else's (Twisted's, a library's) from ``warn`` up.  A failure is
one line (its type and message), never a traceback.

:class:`QueueLog` is a queue observer that logs what an operator needs in
the record: width and rate changes with their cause (``admin``,
``controller``, ``program``), holds and their release.  The run logs its own
start, resumption, stops and end (``event``: ``run.started``,
``run.resumed``, ``run.stopping``, ``run.finished``).  No log line carries a
secret: recipe secrets never reach an event, and the admin token is shown by
its first characters only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import IO, Any, cast

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)
from twisted.logger import Logger as _Logger
from zope.interface import implementer  # type: ignore[import-untyped]

from fetchq.events import Event, LaneHeld, LaneReleased, RateChanged, WidthChanged

__all__ = ["FORMATS", "QueueLog", "format_human", "format_json", "start_logging"]

FORMATS = ("human", "json")
"""The values of ``--log-format``."""

log = _Logger(namespace="fetchq.queue")

_SIMPLE = (str, int, float, bool, type(None))


def _when(event: dict[str, Any]) -> str:
    stamp = event.get("log_time")
    if stamp is None:
        return ""
    return (
        datetime.fromtimestamp(stamp, timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _message(event: dict[str, Any]) -> str:
    text = formatEvent(event) or ""
    failure = event.get("log_failure")
    if failure is not None:
        error = failure.value
        text = f"{text}: {type(error).__name__}: {error}" if text else str(error)
    return " ".join(text.split())


def format_human(event: dict[str, Any]) -> str:
    """One human line for a log event."""
    level = event.get("log_level", LogLevel.info)
    where = event.get("log_namespace", "-")
    return f"{_when(event)} {level.name:5} [{where}] {_message(event)}\n"


def format_json(event: dict[str, Any]) -> str:
    """One JSON object (one line) for a log event."""
    level = event.get("log_level", LogLevel.info)
    out: dict[str, Any] = {
        "time": _when(event),
        "level": level.name,
        "namespace": event.get("log_namespace"),
        "event": event.get("event"),
        "message": _message(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in out or key.startswith("_"):
            continue
        if isinstance(value, _SIMPLE) and not (
            isinstance(value, float) and value != value
        ):
            out[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        out["error"] = type(failure.value).__name__
    return json.dumps(out, ensure_ascii=False, default=str) + "\n"


@implementer(ILogObserver)
class _Writer:
    def __init__(self, stream: IO[str], fmt: Callable[[dict[str, Any]], str]):
        self.stream = stream
        self.fmt = fmt

    def __call__(self, event: dict[str, Any]) -> None:
        try:
            self.stream.write(self.fmt(event))
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or full stream must not break the run


def observer_for(
    fmt: str = "human", stream: IO[str] | None = None, level: LogLevel = LogLevel.info
) -> ILogObserver:
    """The observer :func:`start_logging` begins with (also for tests)."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    writer = _Writer(
        sys.stderr if stream is None else stream,
        format_json if fmt == "json" else format_human,
    )
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    predicate.setLogLevelForNamespace("fetchq", level)
    return cast(
        ILogObserver,
        FilteringLogObserver(cast(Any, writer), [cast(Any, predicate)]),
    )


def start_logging(
    fmt: str = "human", stream: IO[str] | None = None, level: LogLevel = LogLevel.info
) -> ILogObserver:
    """Begin Twisted's logging (once per process) to ``stream`` (default
    stderr) in ``fmt`` (``human`` or ``json``); returns the observer."""
    observer = observer_for(fmt, stream, level)
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    return observer


class QueueLog:
    """A queue observer that logs width, rate, holds and releases.

    Args:
        cause: says who is changing things now (``"admin"`` while the admin
            server acts); None then means the controller if ``controlled()``
            says one is attached, else the program.
        controlled: whether an adaptive controller steers the queue.
        lanes: log each lane's own width and rate changes too (a controller
            per lane makes many).
    """

    def __init__(
        self,
        cause: Callable[[], str | None] = lambda: None,
        controlled: Callable[[], bool] = lambda: False,
        lanes: bool = False,
    ) -> None:
        self.cause = cause
        self.controlled = controlled
        self.lanes = lanes

    def _why(self) -> str:
        return self.cause() or ("controller" if self.controlled() else "program")

    def __call__(self, event: Event) -> None:
        cls = event.__class__
        if cls is WidthChanged:
            assert isinstance(event, WidthChanged)
            if event.lane and not (self.lanes or self.cause()):
                return
            log.info(
                "{what} width {old} -> {new} ({cause})",
                event="width.changed",
                what=_what(event.lane, event.key),
                lane=None if event.key is None else str(event.key),
                old=event.old,
                new=event.new,
                cause=self._why(),
            )
        elif cls is RateChanged:
            assert isinstance(event, RateChanged)
            if event.lane and not (self.lanes or self.cause()):
                return
            log.info(
                "{what} rate {old} -> {new} per second ({cause})",
                event="rate.changed",
                what=_what(event.lane, event.key),
                lane=None if event.key is None else str(event.key),
                old=event.old,
                new=event.new,
                cause=self._why(),
            )
        elif cls is LaneHeld:
            assert isinstance(event, LaneHeld)
            log.info(
                "{what} held for {seconds:.1f}s ({cause})",
                event="lane.held",
                what=_what(event.key is not None, event.key),
                lane=None if event.key is None else str(event.key),
                seconds=event.until - event.time,
                cause=self.cause() or "the remote service",
            )
        elif cls is LaneReleased:
            assert isinstance(event, LaneReleased)
            log.info(
                "{what} released ({cause})",
                event="lane.released",
                what=_what(event.key is not None, event.key),
                lane=None if event.key is None else str(event.key),
                cause=self._why(),
            )


def _what(lane: bool, key: Any) -> str:
    if not lane:
        return "queue"
    return "lanes' default" if key is None else f"lane {key}"
