"""Crash tests: a real process using a SQLiteStore is killed with SIGKILL at
random (seeded) moments, and the state file must always recover.

The child (:func:`child`, run with ``python -c``) opens the file, releases
what a previous run left claimed, adds the same items again (idempotent),
then claims, acks and sometimes requeues until nothing is left, printing
``done ID`` for each acked id only once that ack is committed.  The test kills
it part-way, checks the file, and starts it again on the same file, several
times, before letting a last run finish.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import attrs

from fetchq.store import NewItem, Record, SQLiteStore
from tests.test_store import TempDirTestCase

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(line: str) -> None:
    """Print one line to the parent at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def child(path: str, total: str, durability: str, run: str, seed: str) -> None:
    """Work through ``total`` items in the store at ``path``, as a runner
    would, printing ``done ID`` once each ack is committed.

    Its clock is kept in the store's metadata so that retry times set by a
    killed run mean the same to the next one.
    """
    rng = random.Random(int(seed))
    full = durability == "full"
    store = SQLiteStore(path, durability=durability, batch_ops=40, batch_ms=None)
    say("open")
    now = float(store.meta_get("clock", 0.0))
    store.release(now)
    n = int(total)
    store.add(NewItem(f"item-{i}", {"n": i}, i % 5, f"k{i % 3}") for i in range(n))
    store.flush()
    say("added")
    acked: list[str] = []
    while True:
        now += 1.0
        batch = store.claim(rng.randint(1, 24), now, 1000.0)
        for c in batch:
            if c.attempts < 3 and rng.random() < 0.1:
                store.requeue(c.id, now + rng.choice([0.0, 3.0]), now)
                continue
            outcome = rng.choice(["ok", "ok", "failed"])
            record = {"id": c.id, "run": int(run), "attempt": c.attempts}
            if not store.ack(c.id, outcome, record, now):
                say(f"dup {c.id}")
            elif full:
                say(f"done {c.id}")
            else:
                acked.append(c.id)
        store.meta_set("clock", now)
        if not full and (not batch or rng.random() < 0.3):
            store.flush()
            for item_id in acked:
                say(f"done {item_id}")
            acked.clear()
        if not batch:
            counts = store.counts()
            if not counts.pending and not counts.claimed:
                break
    store.close()
    say("finished")


@attrs.define
class Run:
    """What one child run printed before it ended."""

    lines: list[str]
    returncode: int
    stderr: str

    @property
    def done(self) -> list[str]:
        """The ids it printed as committed."""
        return [line[5:] for line in self.lines if line.startswith("done ")]


def run_child(
    path: str,
    total: int,
    durability: str,
    run: int,
    kill_at: int | None,
    delay: float = 0.0,
) -> Run:
    """Run the child on ``path`` and SIGKILL it ``delay`` seconds after it
    has printed ``kill_at`` committed ids (0: after it has opened the file),
    or let it finish if ``kill_at`` is None."""
    code = (
        "import sys; from tests.test_store_durability import child; "
        "child(*sys.argv[1:])"
    )
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, path, str(total), durability, str(run), "7"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    watchdog = threading.Timer(60, proc.kill)
    watchdog.start()
    with proc:
        assert proc.stdout is not None and proc.stderr is not None
        lines: list[str] = []
        done = 0
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("done "):
                done += 1
            if kill_at is not None and (
                (kill_at == 0 and line == "open\n") or (kill_at and done >= kill_at)
            ):
                time.sleep(delay)
                os.kill(proc.pid, signal.SIGKILL)
                break
        lines += proc.stdout.read().splitlines(keepends=True)
        stderr = proc.stderr.read()
        returncode = proc.wait()
    watchdog.cancel()
    # A line cut short by the kill was never fully printed: ignore it.
    whole = [line[:-1] for line in lines if line.endswith("\n")]
    return Run(whole, returncode, stderr)


class CrashTests(TempDirTestCase):
    """kill -9 at any moment loses at most the uncommitted batch and never
    the file."""

    def check_file(
        self, path: str, total: int, added: bool, committed: set[str]
    ) -> dict[str, Record]:
        """Check a state file left by a killed (or finished) child; return
        its records by id."""
        conn = sqlite3.connect(path)
        try:
            self.assertEqual(
                conn.execute("PRAGMA integrity_check").fetchall(), [("ok",)]
            )
        finally:
            conn.close()
        store = SQLiteStore(path)
        try:
            counts = store.counts()
            records = store.records(0, total + 1)
            by_id = {r.id: r for r in records}
            self.assertEqual([r.seq for r in records], list(range(1, len(records) + 1)))
            self.assertEqual(len(by_id), len(records), "an id was acked twice")
            self.assertEqual(counts.finished, len(records))
            self.assertEqual(committed - by_id.keys(), set(), "committed acks lost")
            if added:
                self.assertEqual(counts.total, total)
            self.assertTrue(counts.total <= total)
            # Everything not done can be claimed after release(), exactly once.
            store.release(0.0)
            claimed = [c.id for c in store.claim(total + 1, 1e9, 1.0)]
            self.assertEqual(len(set(claimed)), len(claimed))
            self.assertEqual(set(claimed) & by_id.keys(), set())
            everything = set(claimed) | by_id.keys()
            self.assertEqual(len(everything), counts.total)
            self.assertTrue(everything <= {f"item-{i}" for i in range(total)})
            for item_id in committed:
                item = store.get(item_id)
                self.assertTrue(item is not None and item.state.value == "done")
        finally:
            store.close()
        return by_id

    def crash_and_resume(
        self, durability: str, total: int, kills: int, seed: int
    ) -> None:
        """Kill the child ``kills`` times at seeded points, checking the file
        after each, then let one run finish and check every item has exactly
        one record, and no record in the file after a kill is ever replaced
        (what was finished is never redone)."""
        rng = random.Random(seed)
        path = self.mktemp()
        committed: set[str] = set()
        added = False
        kept: dict[str, Record] = {}
        for run in range(kills):
            remaining = total - len(committed)
            kill_at = 0 if run == 0 else rng.randint(1, max(1, remaining // 3))
            delay = rng.uniform(0, 0.01)
            result = run_child(path, total, durability, run, kill_at, delay)
            # Rarely, the child may finish before the signal lands.
            finished = result.returncode == 0 and result.lines[-1:] == ["finished"]
            self.assertTrue(
                result.returncode == -signal.SIGKILL or finished, result.stderr
            )
            self.assertFalse(any(line.startswith("dup ") for line in result.lines))
            added = added or "added" in result.lines
            committed.update(result.done)
            records = self.check_file(path, total, added, committed)
            for item_id, record in kept.items():
                self.assertEqual(records[item_id], record, "a finished item was redone")
            kept = records
        result = run_child(path, total, durability, kills, None)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.lines[-1], "finished")
        self.assertFalse(any(line.startswith("dup ") for line in result.lines))
        committed.update(result.done)
        records = self.check_file(path, total, True, committed)
        self.assertEqual(len(records), total)
        for item_id, record in kept.items():
            self.assertEqual(records[item_id], record, "a finished item was redone")

    def test_kill_with_batched_commits(self) -> None:
        """With batched commits, five SIGKILLs at random points (one while
        adding) never corrupt the file, never lose a committed ack or an
        item, never redo a finished item, and a last run finishes every item
        with exactly one record."""
        self.crash_and_resume("normal", total=5000, kills=5, seed=1)

    def test_kill_with_full_durability(self) -> None:
        """The same with a commit per operation (``durability="full"``)."""
        self.crash_and_resume("full", total=600, kills=4, seed=2)
