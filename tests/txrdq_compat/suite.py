"""Run txrdq 0.2.14's own test suite against fetchq, or against txrdq itself.

The suite comes from txrdq's sdist on PyPI, fetched with pip at test time and
kept in a cache (``~/.cache/fetchq-tests/``, or ``$FETCHQ_TEST_CACHE``), so
re-runs need no network:

1. **fetch**: ``pip download --no-deps --no-binary :all:`` of
   ``txrdq==0.2.14``, pinned to the sdist's sha256.
2. **convert**: txrdq is Python 2 code.  Its package is converted with
   lib2to3 (``python -m lib2to3 -w -n``), as the issue that asked for this
   did; where lib2to3 is gone (Python 3.13+), :func:`convert_py2` makes the
   same edits for the few Python 2 constructs this sdist uses (a test checks
   that both give identical files).  Nothing else in the tests is changed.
   The tests go to a package of their own, ``txrdq_suite``, so that the name
   ``txrdq`` is free for the shim.
3. **run**: ``python -m twisted.trial`` in a subprocess, with ``PYTHONPATH``
   putting ``shim/`` (a ``txrdq`` package that only re-exports fetchq's
   classes) before anything else, so it shadows any real txrdq; or, for the
   baseline, the converted txrdq itself.
4. **parse**: each test's outcome from trial's ``bwverbose`` lines, checked
   against trial's own count of successes.

Run it by hand::

    .venv/bin/python -m tests.txrdq_compat.suite              # against fetchq
    .venv/bin/python -m tests.txrdq_compat.suite --against txrdq

:data:`EXPECTED_FAILURES` lists, with the reason for each, every test that
does not pass against fetchq; ``tests/test_txrdq_suite.py`` fails if any other
test fails, or if one of these starts passing (so the README's list stays
exact).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VERSION = "0.2.14"
SDIST_SHA256 = "4e8ae533f436654e02f0a33e8c3d5f39dbb7a5b49585deb7f3b56fd9260c479e"
TOTAL_TESTS = 101

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim"
REPO = HERE.parent.parent
SUITE_PACKAGE = "txrdq_suite"

_PRIVATE = "txrdq-private: "
_DIFFERENT = "deliberate difference: "

_JOB_TESTS = (
    "testLaunchLaunchFails",
    "testWatchCancel",
    "testWatchCancelDeferred",
    "testWatchLaunchSucceedCheckResult",
    "testWatchLaunchSucceed",
    "testLaunchSucceedWatch",
    "testWatchLaunchFail",
    "testLaunchFailWatch",
    "testWatchLaunchSucceedCancel",
    "testWatchLaunchSucceedCancelDeferred",
    "testWatchLaunchFailCancel",
    "testWatchLaunchFailCancelDeferred",
    "testLaunchFailWatchCancel",
    "testLaunchFailWatchCancelDeferred",
    "testWatchLaunchUnderwayCancel",
    "testWatchLaunchUnderwayCancelDeferred",
)

EXPECTED_FAILURES: dict[str, str] = {
    # -- txrdq's private internals (16 + 2 tests) ------------------------------
    # test_job.py builds Jobs by hand and runs them with job.launch(func) and
    # job.watch(): in txrdq a Job ran itself and kept its own watchers.  In
    # fetchq the queue runs jobs and a job's one Deferred is put()'s, so Job has
    # neither method.  (testInitiallyPending, which only reads a hand-made
    # job's state, passes.)
    **{
        f"{SUITE_PACKAGE}.test_job.TestJob.{name}": _PRIVATE
        + "a hand-made Job run with job.launch()/job.watch()"
        for name in _JOB_TESTS
    },
    # dpq._Task is txrdq's private heap-entry class; fetchq's entries are
    # tuples.  The shim binds _Task to None only so test_dpq.py imports.
    f"{SUITE_PACKAGE}.test_dpq.TestTask.testAttrs": _PRIVATE + "dpq._Task",
    f"{SUITE_PACKAGE}.test_dpq.TestTask.testLessThan": _PRIVATE + "dpq._Task",
    # -- deliberate differences, each in the README (2 tests) -----------------
    # assertFailure(d, Job): txrdq errbacked with the Job itself, which is not
    # an exception (modern Twisted cannot throw it into an inlineCallbacks
    # generator).  fetchq errbacks with JobFailed, which reads as its job
    # (failure.value.jobarg, .state, ...) but is not a Job.
    f"{SUITE_PACKAGE}.test_rdq.TestDeferredErrorHandling.testRaiseFailsWithJob": (
        _DIFFERENT + "errbacks carry JobFailed/JobCancelled, not the Job"
    ),
    # A queue of width 2 made with func=None gets two puts and expects them
    # pending: txrdq launched on a later reactor turn (through a Cooperator);
    # fetchq launches in put() when a slot is free, so both jobs have already
    # launched and failed (func is None) by the next line.
    f"{SUITE_PACKAGE}.test_rdq.TestSimple.testClearQueueCancelPending": (
        _DIFFERENT + "put() launches at once when a slot is free"
    ),
    # -- fails against txrdq itself (1 test) ----------------------------------
    # Its helper sorts [1, 2, None, 'hello', 'world']: fine in Python 2, a
    # TypeError in Python 3, whatever the queue does.
    f"{SUITE_PACKAGE}.test_rdq.TestTiming.testPauseAddStop": (
        "fails against txrdq itself: sorts None with ints (Python 2 only)"
    ),
}


class Unavailable(Exception):
    """The sdist could not be had (no network, no pip, a bad download)."""


# ---------------------------------------------------------------------------
# Fetching


def cache_dir() -> Path:
    """Where the sdist and its conversion are kept between runs."""
    root = os.environ.get("FETCHQ_TEST_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "fetchq-tests"
    return base / f"txrdq-{VERSION}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch_sdist(cache: Path, timeout: float = 120.0) -> Path:
    """The txrdq sdist, from the cache or downloaded into it with pip.

    Raises:
        Unavailable: if pip cannot download it (offline, no pip) or what it
            downloaded is not the pinned file.
    """
    sdist_dir = cache / "sdist"
    for path in sorted(sdist_dir.glob("*.tar.gz")):
        if _sha256(path) == SDIST_SHA256:
            return path
    sdist_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=sdist_dir) as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"txrdq=={VERSION} --hash=sha256:{SDIST_SHA256}\n")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--require-hashes",
            "--disable-pip-version-check",
            "--timeout",
            "15",
            "--retries",
            "1",
            "-r",
            str(requirements),
            "-d",
            str(Path(tmp) / "out"),
        ]
        if importlib.util.find_spec("setuptools") is not None:
            # Preparing the sdist's metadata needs setuptools; using ours
            # saves installing it into an isolated build environment.
            command.insert(command.index("-r"), "--no-build-isolation")
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise Unavailable(f"pip download of txrdq=={VERSION}: {e}") from e
        found = sorted((Path(tmp) / "out").glob("*.tar.gz"))
        if done.returncode != 0 or not found:
            lines = (done.stderr or done.stdout).strip().splitlines()
            why = lines[-1] if lines else f"exit status {done.returncode}"
            raise Unavailable(f"pip download of txrdq=={VERSION} failed: {why}")
        if _sha256(found[0]) != SDIST_SHA256:
            raise Unavailable(f"{found[0].name} does not have the pinned sha256")
        target = sdist_dir / found[0].name
        os.replace(found[0], target)
    return target


# ---------------------------------------------------------------------------
# Converting


def have_lib2to3() -> bool:
    """Whether this Python still ships lib2to3 (it went in 3.13)."""
    return importlib.util.find_spec("lib2to3") is not None


def _wrap_call(text: str, start: int, wrapper: str) -> tuple[str, int]:
    """Wrap the call starting at ``start`` (``name(...)``) in ``wrapper(...)``.

    Returns the new text and the index just past the wrapped call.
    """
    depth = 0
    i = text.index("(", start)
    while True:
        char = text[i]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                break
        i += 1
    end = i + 1
    wrapped = f"{wrapper}({text[start:end]})"
    return text[:start] + wrapped + text[end:], start + len(wrapped)


def convert_py2(source: str) -> str:
    """Python 2 to 3 for the constructs txrdq 0.2.14 uses, as lib2to3 does.

    - ``it.next()`` becomes ``next(it)``; ``def next(self)`` becomes
      ``def __next__(self)`` (fixers ``next``);
    - ``xrange(`` becomes ``range(`` (``xrange``);
    - ``range(...)`` outside a ``for ... in`` becomes ``list(range(...))``
      (``xrange``, which keeps list semantics);
    - a statement ``map(...)`` becomes ``list(map(...))`` (``map``: in
      Python 3 a bare map() call would do nothing);
    - ``assertEquals`` becomes ``assertEqual`` (``asserts``).

    It handles exactly what that sdist contains; ``test_txrdq_suite`` checks
    that its output equals lib2to3's wherever lib2to3 exists.
    """
    source = re.sub(r"\b([\w.]+)\.next\(\)", r"next(\1)", source)
    source = re.sub(r"(?m)^(\s*)def next\(self\):", r"\1def __next__(self):", source)
    source = re.sub(r"\bassertEquals\(", "assertEqual(", source)
    has_xrange = re.compile(r"\bxrange\(")
    out: list[str] = []
    for line in source.splitlines(keepends=True):
        if has_xrange.search(line):
            out.append(has_xrange.sub("range(", line))
            continue
        position = 0
        while True:
            match = re.compile(r"\brange\(").search(line, position)
            if match is None:
                break
            before = line[: match.start()]
            if re.search(r"\bin\s+$", before):  # for x in range(...)
                position = match.end()
                continue
            line, position = _wrap_call(line, match.start(), "list")
        statement = re.match(r"(\s*)(map\(.*\))(\s*)$", line, re.DOTALL)
        if statement:
            indent, call, tail = statement.groups()
            line = f"{indent}list({call}){tail}"
        out.append(line)
    return "".join(out)


def _convert_with_lib2to3(package: Path) -> None:
    command = [
        sys.executable,
        "-W",
        "ignore::DeprecationWarning",
        "-W",
        "ignore::PendingDeprecationWarning",
        "-m",
        "lib2to3",
        "--write",
        "--nobackups",
        str(package),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"lib2to3 failed on {package}:\n{done.stderr}")


def _convert_with_fallback(package: Path) -> None:
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        converted = convert_py2(source)
        if converted != source:
            path.write_text(converted)


def _extract(sdist: Path, into: Path) -> Path:
    with tarfile.open(sdist) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, filter="data")
        else:  # pragma: no cover - Pythons before the tarfile filters
            for member in tar.getmembers():
                if (
                    member.name.startswith(("/", ".."))
                    or ".." in Path(member.name).parts
                ):
                    raise RuntimeError(f"unsafe path in sdist: {member.name}")
            tar.extractall(into)
    [root] = [p for p in into.iterdir() if p.is_dir()]
    return root / "txrdq"


def convert(sdist: Path, cache: Path, converter: str | None = None) -> Path:
    """The converted suite, from the cache or made now.

    Args:
        converter: ``"lib2to3"`` or ``"fallback"``; by default lib2to3 where
            this Python has it.

    Returns:
        A directory holding ``lib/txrdq`` (txrdq itself, converted) and
        ``suite/txrdq_suite`` (its tests, converted).
    """
    if converter is None:
        converter = "lib2to3" if have_lib2to3() else "fallback"
    out = cache / f"py3-{converter}"
    if (out / ".complete").exists():
        return out
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="convert-", dir=cache))
    try:
        package = _extract(sdist, work / "sdist")
        if converter == "lib2to3":
            _convert_with_lib2to3(package)
        elif converter == "fallback":
            _convert_with_fallback(package)
        else:
            raise ValueError(f"unknown converter {converter!r}")
        result = work / "result"
        (result / "lib").mkdir(parents=True)
        (result / "suite").mkdir()
        shutil.move(str(package / "test"), str(result / "suite" / SUITE_PACKAGE))
        shutil.move(str(package), str(result / "lib" / "txrdq"))
        (result / ".complete").write_text(f"txrdq {VERSION}, {converter}\n")
        shutil.rmtree(out, ignore_errors=True)
        try:
            os.replace(result, out)
        except OSError:
            if not (out / ".complete").exists():
                raise
            # Another run converted it meanwhile; theirs is as good.
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


# ---------------------------------------------------------------------------
# Running


_RESULT_LINE = re.compile(r"^(\S+) \.\.\. ((?:\[[^\]\n]+\])+)\s*$", re.MULTILINE)
_SUCCESSES = re.compile(r"^(?:PASSED|FAILED) \((?:.*\b)?successes=(\d+)", re.MULTILINE)
_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)


@dataclass
class SuiteResult:
    """What one trial run of the suite gave."""

    against: str
    outcomes: dict[str, list[str]] = field(default_factory=dict)
    """Each test id's statuses, e.g. ``["OK"]`` or ``["FAIL", "ERROR"]``."""
    ran: int = 0
    output: str = ""

    @property
    def passed(self) -> list[str]:
        return sorted(t for t, s in self.outcomes.items() if s == ["OK"])

    @property
    def failed(self) -> list[str]:
        return sorted(t for t, s in self.outcomes.items() if s != ["OK"])


def parse(output: str, against: str) -> SuiteResult:
    """Read trial's ``bwverbose`` report.

    Raises:
        ValueError: if the per-test lines and trial's own count of successes
            disagree (the report format changed).
    """
    result = SuiteResult(against=against, output=output)
    for match in _RESULT_LINE.finditer(output):
        statuses = re.findall(r"\[([^\]]+)\]", match.group(2))
        result.outcomes.setdefault(match.group(1), []).extend(statuses)
    ran = _RAN.search(output)
    result.ran = int(ran.group(1)) if ran else 0
    counted = _SUCCESSES.search(output)
    successes = int(counted.group(1)) if counted else 0
    if successes != len(result.passed):
        raise ValueError(
            f"trial counted {successes} successes but its report shows "
            f"{len(result.passed)} tests [OK]:\n{output[-3000:]}"
        )
    return result


def run_suite(
    converted: Path,
    against: str = "fetchq",
    tests: Iterable[str] = (),
    timeout: float = 180.0,
) -> SuiteResult:
    """Run the converted suite (or just ``tests``) in a trial subprocess.

    Args:
        against: ``"fetchq"`` (through the shim) or ``"txrdq"`` (itself).
    """
    if against == "fetchq":
        path = [SHIM, converted / "suite", REPO]
    elif against == "txrdq":
        path = [converted / "lib", converted / "suite"]
    else:
        raise ValueError(f"against must be 'fetchq' or 'txrdq', not {against!r}")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
    targets = list(tests) or [SUITE_PACKAGE]
    with tempfile.TemporaryDirectory(prefix="txrdq-trial-") as cwd:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "twisted.trial",
                "--reporter=bwverbose",
                "--temp-directory",
                str(Path(cwd) / "_trial_temp"),
                *targets,
            ],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    return parse(done.stdout + done.stderr, against)


def prepare(converter: str | None = None) -> Path:
    """Fetch (or find in the cache) and convert the suite."""
    cache = cache_dir()
    return convert(fetch_sdist(cache), cache, converter)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", choices=("fetchq", "txrdq"), default="fetchq")
    parser.add_argument("--converter", choices=("lib2to3", "fallback"))
    args = parser.parse_args(argv)
    try:
        converted = prepare(args.converter)
    except Unavailable as e:
        print(f"cannot run txrdq's suite: {e}", file=sys.stderr)
        return 2
    result = run_suite(converted, args.against)
    for test in result.failed:
        line = f"{'/'.join(result.outcomes[test]):<14} {test}"
        if args.against == "fetchq":
            line += f"  ({EXPECTED_FAILURES.get(test, 'NOT EXPECTED')})"
        print(line)
    print(
        f"txrdq {VERSION}'s suite against {args.against}: "
        f"{len(result.passed)}/{result.ran} passed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
