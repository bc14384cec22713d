"""``fetchq run --dry-run``: what a run would do, found without doing it.

A dry run checks the recipe (as ``fetchq run`` does, overrides included),
then reads what a run would start from, and prints the plan:

- **the input**: every row counted in one streaming read (one row in memory
  at a time), bad rows with them: rows the reader cannot use and rows the
  recipe's kind refuses (a malformed URL, a number that is not E.164, a row
  that cannot fill the API's templates), the first few named by place.
  Duplicate ids are not looked for: that needs every id at once; the run's
  state finds them as it reads.
- **the state**: how many rows it holds done (by outcome) and to do, how far
  earlier runs read the input, and whether the part they read has changed
  since (the run's own checkpoint check, so a run would refuse it too).  The
  SQLite file is opened read-only, and not at all if it does not exist; a
  Redis state is not contacted.
- **this run**: the rows it would run (those left to do, the failed ones
  again with ``--retry-failed``, the rows not yet read, at most ``--limit``
  of those), and **the pace**: width, rate, per-lane limits, adaptive
  control, retries, the failure breaker and, when a rate binds, the least
  time the rows can take (a rate is a ceiling, so nothing makes them take
  less; first pages only for an ``api`` recipe).

Nothing is fetched, sent or written, and no service is contacted.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import attrs
from twisted.internet.task import Clock

from fetchq.breaker import DEFAULT as DEFAULT_MAX_FAILURES
from fetchq.breaker import MaxFailures
from fetchq.inputs import Checkpoint, InputChanged, InputError, InputReader
from fetchq.kinds import BadRow
from fetchq.recipe import ApiRecipe, FetchRecipe, Recipe, SmsRecipe
from fetchq.recipe.units import format_duration, format_rate
from fetchq.store.base import Counts

__all__ = ["InputCount", "StateView", "count_input", "dry_run", "read_state"]

MAX_LANES = 100_000
"""Most distinct lanes counted for the time bound (memory stays bounded)."""

_SHOWN_BAD = 3
_LANE_NAME = {"fetch": "host", "sms": "sender", "api": "endpoint"}


@attrs.frozen
class InputCount:
    """What one streaming read of the input found.

    Attributes:
        rows: every row (blank lines and ``#`` comments of lines are not rows).
        bad: rows that would be recorded as failed input.
        first_bad: the first few bad rows' reasons, with their places.
        after: rows from row number ``start`` on (those not yet read by
            earlier runs), and of those ...
        to_read: ... the ones this run would read (at most ``limit``), of
            which ``bad_to_read`` are bad.
        lanes: good rows to read by lane, or None past :data:`MAX_LANES`.
    """

    rows: int
    bad: int
    first_bad: tuple[str, ...]
    after: int
    to_read: int
    bad_to_read: int
    lanes: Mapping[str, int] | None


def count_input(recipe: Recipe, start: int = 0, limit: int | None = None) -> InputCount:
    """Read the whole input once, as a run reads it, counting.

    Args:
        recipe: the recipe.
        start: the first row number not yet read by earlier runs.
        limit: most rows of those that a run would read.

    Raises:
        InputError: the input cannot be read.
    """
    spec = recipe.input
    kind = _row_checker(recipe)
    rows = bad = after = to_read = bad_to_read = 0
    first_bad: list[str] = []
    lanes: dict[str, int] | None = {}
    name = _shown(spec.path)
    with InputReader(
        spec.path,
        spec.format,
        getattr(spec, "url_field", None),
        spec.priority_field,
        spec.id_field,
        name=name,
    ) as reader:
        for row in reader:
            rows += 1
            reason = row.error
            key = None
            if reason is None:
                try:
                    key = kind.item(row).key
                except BadRow as e:
                    reason = f"{name}:{row.line}: {e}"
            if reason is not None:
                bad += 1
                if len(first_bad) < _SHOWN_BAD:
                    first_bad.append(reason)
            if row.index < start:
                continue
            after += 1
            if limit is not None and to_read >= limit:
                continue
            to_read += 1
            bad_to_read += reason is not None
            if key is not None and lanes is not None:
                lane = str(key)
                lanes[lane] = lanes.get(lane, 0) + 1
                if len(lanes) > MAX_LANES:
                    lanes = None
    return InputCount(rows, bad, tuple(first_bad), after, to_read, bad_to_read, lanes)


def _row_checker(recipe: Recipe) -> Any:
    """The recipe's kind, made on a clock that is never run (nothing can be
    sent), without making the bodies directory: only its ``item`` is used."""
    from fetchq.run import make_kind

    if isinstance(recipe, FetchRecipe) and recipe.fetch.save_bodies is not None:
        recipe = attrs.evolve(
            recipe, fetch=attrs.evolve(recipe.fetch, save_bodies=None)
        )
    return make_kind(recipe, Clock())


@attrs.frozen
class StateView:
    """What a SQLite state file holds, read without changing it.

    Attributes:
        counts: its items by state (claimed ones go back to pending when a
            run starts).
        checkpoint: how far earlier runs read the input, if they did.
        legacy_rows: rows stored by a fetchq 0.1 state without a checkpoint.
        lanes: items left to do by lane (and failed ones, for
            ``--retry-failed``), or None past :data:`MAX_LANES`.
        failed_lanes: failed items by lane, or None past :data:`MAX_LANES`.
    """

    counts: Counts
    checkpoint: Checkpoint | None
    legacy_rows: int
    lanes: Mapping[str, int] | None
    failed_lanes: Mapping[str, int] | None


class StateUnreadable(Exception):
    """The state file exists but cannot be read (in use, not a state file)."""


def read_state(path: Path) -> StateView | None:
    """The state file at ``path`` as it is, or None if there is none.

    Raises:
        StateUnreadable: saying why it cannot be read.
    """
    if not path.exists():
        return None
    # A state file closed cleanly has no write-ahead log: read it as an
    # immutable file, which needs no lock and no -shm index beside it.  With
    # a log (a run going on, or one that crashed), SQLite must read the log
    # too, and may make its -shm index for that (a file of its own, the
    # state unchanged); a run going on holds its lock and is said to be.
    wal = Path(os.fspath(path) + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    uri = f"file:{quote(os.fspath(path))}?{mode}"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=0.5)
    except sqlite3.Error as e:
        raise StateUnreadable(str(e)) from e
    try:
        pending = claimed = 0
        done: dict[str, int] = {}
        for state, outcome, n in conn.execute(
            "SELECT state, outcome, COUNT(*) FROM items GROUP BY state, outcome"
        ):
            if state in (0, 1):
                pending += n
            elif state == 2:
                claimed += n
            else:
                done[outcome] = done.get(outcome, 0) + n
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        lanes = _lane_counts(conn, "state < 3")
        failed = _lane_counts(conn, "state = 3 AND outcome = 'failed'")
    except sqlite3.OperationalError as e:
        why = str(e)
        if "locked" in why:
            why = "in use by another process (a run is going on)"
        raise StateUnreadable(why) from e
    except sqlite3.DatabaseError as e:
        raise StateUnreadable(str(e)) from e
    finally:
        conn.close()
    checkpoint = None
    legacy = 0
    if "input.checkpoint" in meta:
        checkpoint = Checkpoint.from_json(json.loads(meta["input.checkpoint"]))
    elif "input.next_row" in meta:
        legacy = int(json.loads(meta["input.next_row"]))
    return StateView(Counts(pending, claimed, done), checkpoint, legacy, lanes, failed)


def _lane_counts(conn: sqlite3.Connection, where: str) -> dict[str, int] | None:
    counts: dict[str, int] = {}
    query = f"SELECT key, COUNT(*) FROM items WHERE {where} GROUP BY key LIMIT ?"
    for key, n in conn.execute(query, (MAX_LANES + 1,)):
        counts[str(key)] = n
    return None if len(counts) > MAX_LANES else counts


def _shown(path: Path) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if relative.startswith("..") else relative


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}" + ("" if count == 1 else "s")


def human(seconds: float) -> str:
    """A duration for people: ``2h 5m``, ``3m 20s``, ``12s``."""
    total = math.ceil(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [
        f"{value}{unit}"
        for value, unit in ((days, "d"), (hours, "h"), (minutes, "m"), (secs, "s"))
        if value
    ]
    return " ".join(parts[:2]) or "0s"


def time_bound(
    rows: int, lanes: Mapping[str, int] | None, recipe: Recipe
) -> tuple[float, str] | None:
    """The least time ``rows`` jobs can take at the recipe's rates, and why;
    None if no rate binds.  A token bucket lets ``burst`` go at once, then
    one each ``1/rate``."""
    queue = recipe.queue
    best: tuple[float, str] | None = None
    if queue.rate is not None and rows:
        seconds = max(0, rows - queue.burst) / queue.rate
        best = (seconds, f"{_n(rows, 'row')} at {format_rate(queue.rate)}")
    lane = queue.lanes
    if lane.rate is not None and lanes:
        name, most = max(lanes.items(), key=lambda item: (item[1], item[0]))
        seconds = max(0, most - lane.burst) / lane.rate
        if best is None or seconds > best[0]:
            what = _LANE_NAME[recipe.kind]
            best = (
                seconds,
                f"{_n(most, 'row')} for {what} {name} at {format_rate(lane.rate)} "
                f"per {what}",
            )
    return best


def _pace(recipe: Recipe, max_failures: MaxFailures | None) -> list[str]:
    queue = recipe.queue
    lane = queue.lanes
    what = _LANE_NAME[recipe.kind]
    pace = f"width {queue.width}"
    pace += (
        ", no overall rate"
        if queue.rate is None
        else f", rate {format_rate(queue.rate)} (burst {queue.burst})"
    )
    per = []
    if lane.width is not None:
        per.append(f"width {lane.width}")
    if lane.rate is not None:
        per.append(f"rate {format_rate(lane.rate)} (burst {lane.burst})")
    pace += f"; per {what}: " + (", ".join(per) if per else "no limit")
    lines = [f"pace:    {pace}"]
    adaptive = queue.adaptive
    if adaptive is not None:
        lines.append(
            f"         adaptive ({adaptive.algorithm}): width from {queue.width} "
            f"within {adaptive.min_width}-{adaptive.max_width}"
            + (", per " + what if adaptive.per_lane else "")
            + (", pacing launches if drops persist" if adaptive.pace else "")
        )
    retry = recipe.retry
    lines.append(
        f"retries: up to {_n(retry.max_attempts, 'attempt')} a job, backoff "
        f"{format_duration(retry.base_delay)} doubling to "
        f"{format_duration(retry.max_delay)}"
    )
    limit = max_failures
    if limit is None:
        limit = getattr(getattr(recipe, "run", None), "max_failures", None)
    limit = limit or DEFAULT_MAX_FAILURES
    if limit.ratio is not None:
        stop = f"once more than {limit.describe()} of the finished jobs failed"
    elif limit.in_a_row is not None:
        stop = f"after {_n(limit.in_a_row, 'failure')} in a row"
    else:
        stop = "never (max_failures 0)"
    lines.append(f"stops:   {stop}")
    return lines


def _describe_kind(recipe: Recipe) -> str:
    if isinstance(recipe, SmsRecipe):
        return f"sms, through {recipe.sms.base_url}"
    if isinstance(recipe, ApiRecipe):
        api = recipe.api
        pages = api.pagination.max_pages
        more = f", up to {_n(pages, 'page')} a row" if pages > 1 else ""
        return f"api, {api.method} {api.base_url}{api.path}{more}"
    return "fetch"


def _done(counts: Counts) -> str:
    parts = ", ".join(f"{n:,} {outcome}" for outcome, n in sorted(counts.done.items()))
    return f"{counts.finished:,} done" + (f" ({parts})" if parts else "")


def _merge(*lanes: Mapping[str, int] | None) -> dict[str, int] | None:
    merged: dict[str, int] = {}
    for counts in lanes:
        if counts is None:
            return None
        for key, n in counts.items():
            merged[key] = merged.get(key, 0) + n
    return merged


def dry_run(
    recipe: Recipe,
    out: IO[str],
    *,
    fresh: bool = False,
    retry_failed: bool = False,
    limit: int | None = None,
    max_failures: MaxFailures | None = None,
) -> int:
    """Print the plan of a run of ``recipe`` with these options on ``out``.

    Returns:
        0, or 2 when the input or the state cannot be read (the problem is
        printed on ``out`` too, as one line).
    """

    def say(line: str) -> None:
        print(line, file=out)

    say(f"dry run of {_shown(recipe.source)}: nothing is fetched, sent or written")
    say(f"kind:    {_describe_kind(recipe)}")
    state: StateView | None = None
    where = f"state:   {_shown(recipe.state.path)}"
    if recipe.state.url is not None:
        from fetchq.store.redis import parse_url

        url = parse_url(recipe.state.url)
        where = (
            f"state:   redis run {recipe.state.run!r} at {url['host']}:{url['port']}"
            f"/{url['db']} (not contacted in a dry run: what it holds is not shown)"
        )
    elif not fresh:
        try:
            state = read_state(recipe.state.path)
        except StateUnreadable as e:
            say(f"{where}: cannot read it: {e}")
            return 2
    start = 0
    changed: str | None = None
    if state is not None:
        if state.checkpoint is not None:
            start = state.checkpoint.index
            try:
                with InputReader(
                    recipe.input.path,
                    recipe.input.format,
                    start=state.checkpoint,
                    name=_shown(recipe.input.path),
                ) as reader:
                    reader.verify()
            except InputChanged as e:
                changed = str(e)
            except InputError as e:
                say(f"input:   cannot read it: {e}")
                return 2
        else:
            start = state.legacy_rows
    try:
        count = count_input(recipe, start, limit)
    except InputError as e:
        say(f"input:   cannot read it: {e}")
        return 2
    line = (
        f"input:   {_shown(recipe.input.path)} ({recipe.input.format}): "
        f"{_n(count.rows, 'row')}"
    )
    if count.bad:
        line += f", {count.bad:,} bad (recorded as failed input, never run)"
    say(line)
    for reason in count.first_bad:
        say(f"         {reason}")
    if count.bad > len(count.first_bad):
        say(f"         ... and {count.bad - len(count.first_bad):,} more")
    say(f"output:  {_shown(recipe.output.path)}")
    to_do = 0
    lanes: dict[str, int] | None = dict(count.lanes or {})
    if count.lanes is None:
        lanes = None
    if recipe.state.url is not None:
        say(where)
        to_do = count.to_read
    elif fresh:
        say(f"{where}: --fresh forgets whatever it holds; every row runs again")
        to_do = count.to_read
    elif state is None:
        say(f"{where}: none yet; the run starts at the input's first row")
        to_do = count.to_read
    else:
        counts = state.counts
        left = counts.pending + counts.claimed
        say(
            f"{where}: {_done(counts)}, {left:,} left to do; earlier runs read "
            f"{_n(start, 'row')} of the input"
        )
        if changed is not None:
            say(f"         the input has changed: {changed}")
            say(
                "         a run would stop at once (exit 2); "
                "--fresh starts over, forgetting the state"
            )
            out.flush()
            return 0
        to_do = left + count.to_read
        lanes = _merge(lanes, state.lanes)
        if retry_failed:
            failed = counts.done.get("failed", 0)
            to_do += failed
            lanes = _merge(lanes, state.failed_lanes)
    plan = f"run:     {_n(to_do, 'row')} to do"
    unread = count.after - count.to_read
    if count.after and count.to_read:
        plan += f" ({count.to_read:,} not yet read"
        plan += f", --limit {limit}: {unread:,} left unread)" if unread else ")"
    elif unread:
        plan += f" (--limit {limit}: {unread:,} left unread)"
    if retry_failed and state is not None and not fresh:
        plan += f", the {state.counts.done.get('failed', 0):,} failed again"
    say(plan)
    for text in _pace(recipe, max_failures):
        say(text)
    bound = time_bound(to_do - count.bad_to_read, lanes, recipe)
    if bound is not None and bound[0] > 0:
        seconds, why = bound
        more = " (first pages; more pages take longer)" if recipe.kind == "api" else ""
        say(f"time:    at least {human(seconds)}: {why}{more}")
    elif lanes is None:
        say(f"time:    more than {MAX_LANES:,} lanes: no bound worked out")
    return 0
