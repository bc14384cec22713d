"""The ``fetchq`` command.

::

    fetchq validate RECIPE [RECIPE ...]
    fetchq run RECIPE [--fresh] [--retry-failed] [--max-failures N|P%]
                      [--workers N] [--read-ahead ROWS]
    fetchq output RECIPE
    fetchq demo [--pages N] [--dir DIR]

Exit status: 0 when everything asked for succeeded, 2 for problems (a bad
recipe, a usage error, an input changed since an earlier run read it, an
unexpected error), 130 on Ctrl-C.  ``run`` also exits 3 when it stopped
because it cannot succeed (credentials refused, a recipe wrong for the
service, an input that cannot be read on) and 4 when the failure breaker
stopped it (``--max-failures``); in both cases the rows not done are left to
do for the next run.  Problems are printed on stderr, one line each
(``path:LINE:COL: message`` for recipes); the user never sees a traceback.

Each subcommand is a pair of functions listed in :data:`COMMANDS`: one adds
its parser (and sets ``handler``), the other runs it and returns the exit
status.  ``run`` also exits 130 (Ctrl-C) or 143 (SIGTERM) when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["COMMANDS", "main"]

OK = 0
PROBLEMS = 2
INTERRUPTED = 130

Handler = Callable[[argparse.Namespace], int]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _add_validate(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "validate",
        help="check recipes without running them",
        description=(
            "Check each recipe: its YAML, every key and value, and that its "
            "input file exists.  Prints one line per recipe that is ok (on "
            "stdout) and one line per problem (on stderr); exits 2 if any "
            "recipe has a problem."
        ),
    )
    parser.add_argument("recipes", nargs="+", metavar="RECIPE", help="a YAML recipe")
    parser.set_defaults(handler=validate)


def validate(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``fetchq validate``: check each recipe named in ``args.recipes``."""
    from fetchq.recipe import RecipeError, load_recipe

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    status = OK
    for name in args.recipes:
        try:
            recipe = load_recipe(name)
            line = f"{name}: ok ({summary(recipe)})"
        except RecipeError as exc:
            for problem in exc.problems:
                print(_one_line(str(problem)), file=err)
            status = PROBLEMS
        except Exception as exc:  # a bug: still one located line, no traceback
            print(
                _one_line(f"{name}:1:1: internal error: {type(exc).__name__}: {exc}"),
                file=err,
            )
            status = PROBLEMS
        else:
            print(line, file=out)
    return status


def summary(recipe: object) -> str:
    """What ``validate`` says about a good recipe, after ``ok``."""
    from fetchq.recipe import ApiRecipe, FetchRecipe, SmsRecipe, format_rate

    assert isinstance(recipe, (FetchRecipe, SmsRecipe, ApiRecipe))
    here = recipe.source.parent
    size = recipe.input.path.stat().st_size
    queue = recipe.queue
    parts = [
        f"kind {recipe.kind}",
        f"input {size} bytes of {recipe.input.format}",
        f"output {os.path.relpath(recipe.output.path, here)}",
        f"width {queue.width}",
    ]
    if queue.rate is not None:
        parts.append(f"rate {format_rate(queue.rate)}")
    lane_name = {"fetch": "host", "sms": "sender", "api": "endpoint"}[recipe.kind]
    lane = queue.lanes
    if lane.width is not None:
        parts.append(f"per {lane_name} width {lane.width}")
    if lane.rate is not None:
        parts.append(f"per {lane_name} rate {format_rate(lane.rate)}")
    if queue.adaptive is not None:
        adaptive = queue.adaptive
        parts.append(
            f"adaptive {adaptive.algorithm} {adaptive.min_width}-{adaptive.max_width}"
        )
    if isinstance(recipe, SmsRecipe):
        parts.append(f"provider {recipe.sms.base_url}")
    elif isinstance(recipe, ApiRecipe):
        parts.append(f"api {recipe.api.method} {recipe.api.base_url}{recipe.api.path}")
    return ", ".join(parts)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "run",
        help="run a recipe (resumes where an earlier run stopped)",
        description=(
            "Run a recipe: read its input, work through it at the recipe's "
            "pace, write one output record per input row.  State is kept in "
            "the recipe's state file, so running it again resumes."
        ),
    )
    parser.add_argument("recipe", metavar="RECIPE", help="a YAML recipe")
    parser.add_argument(
        "--report",
        metavar="HTML",
        default=None,
        help="write a self-contained HTML report of the run (charts, summary)",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start over: forget the state of earlier runs (their records, "
        "what was read of the input) and run every row again",
    )
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the rows that failed again (their records are replaced); "
        "ok rows and bad input are kept",
    )
    parser.add_argument(
        "--max-failures",
        metavar="N|P%",
        default=None,
        help="stop (rows left to do, exit 4) after N failures in a row, or "
        "once more than P%% of the finished jobs failed; 0: never "
        "(default: the recipe's run.max_failures, else 50)",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        default=None,
        help="run N worker processes on this machine under this one (one "
        "progress display, one summary, the output written once); needs "
        "the state in Redis (state.url)",
    )
    parser.add_argument(
        "--read-ahead",
        metavar="ROWS",
        type=int,
        default=None,
        help="most rows waiting in the state before more of the input is read "
        "(default: all of it for a state file, 100000 in Redis, where each "
        "waiting row takes memory)",
    )
    parser.add_argument("--as-worker", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """``fetchq run``: run the recipe ``args.recipe`` to the end."""
    if args.as_worker:
        os.setpgrp()  # Ctrl-C reaches the parent, which passes it on
    from fetchq.breaker import MaxFailures
    from fetchq.recipe import RecipeError, load_recipe

    max_failures = None
    if args.max_failures is not None:
        try:
            max_failures = MaxFailures.parse(args.max_failures)
        except ValueError as exc:
            print(f"fetchq: error: --max-failures: {exc}", file=sys.stderr)
            return PROBLEMS
    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return PROBLEMS
    if args.read_ahead is not None and args.read_ahead < 1:
        print("fetchq: error: --read-ahead must be at least 1", file=sys.stderr)
        return PROBLEMS
    if args.workers is not None or args.as_worker:
        refused = _workers_problem(args, recipe)
        if refused:
            print(f"fetchq: error: {refused}", file=sys.stderr)
            return PROBLEMS
    if args.workers is not None:
        return _react(lambda reactor: _start_workers(recipe, reactor, args))
    options = {
        "report": None if args.report is None else Path(args.report),
        "fresh": args.fresh,
        "retry_failed": args.retry_failed,
        "max_failures": max_failures,
    }
    if args.read_ahead is not None:
        options["read_ahead"] = args.read_ahead
    if args.as_worker:
        options["worker"] = True
    return _react(lambda reactor: _start_run(recipe, reactor, options))


def _workers_problem(args: argparse.Namespace, recipe: Any) -> str | None:
    """Why ``--workers`` cannot be used as asked (None: it can)."""
    if recipe.state.url is None:
        return (
            f"--workers needs the run's state in Redis: set state.url "
            f"(redis://HOST:PORT/DB) in {args.recipe}; see Many machines in "
            "the README"
        )
    if args.workers is not None and args.workers < 1:
        return "--workers must be at least 1"
    if args.workers is not None and args.report is not None:
        return "--report is for one process; it cannot be used with --workers"
    return None


def _start_workers(recipe: Any, reactor: object, args: argparse.Namespace) -> object:
    from fetchq.workers import Workers

    worker_args = []
    if args.max_failures is not None:
        worker_args += ["--max-failures", args.max_failures]
    if args.read_ahead is not None:
        worker_args += ["--read-ahead", str(args.read_ahead)]
    workers = Workers(
        recipe,
        reactor,
        args.workers,
        worker_args=worker_args,
        fresh=args.fresh,
        retry_failed=args.retry_failed,
        handle_signals=True,
    )
    return workers.run()


def _start_run(recipe: Any, reactor: object, options: dict[str, Any]) -> object:
    from fetchq.run import Run

    if recipe.state.url is not None:
        from fetchq.shared_run import SharedRun

        shared = SharedRun(recipe, reactor, handle_signals=True, **options)
        return shared.run()
    options.pop("worker", None)
    run = Run(recipe, reactor, handle_signals=True, **options)
    return run.run()


def _add_output(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "output",
        help="write a recipe's output file from its state",
        description=(
            "Write the recipe's output file (one JSONL record per row done) "
            "from its state: the state file, or the run in Redis -- from any "
            "machine, while the run goes on or after it ended.  The file is "
            "replaced in one rename; rows not done yet have no record."
        ),
    )
    parser.add_argument("recipe", metavar="RECIPE", help="a YAML recipe")
    parser.set_defaults(handler=output)


def output(args: argparse.Namespace) -> int:
    """``fetchq output``: write the output file of ``args.recipe``."""
    from fetchq.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return PROBLEMS
    return _react(lambda reactor: defer_coroutine(_write_output(recipe, reactor)))


async def _write_output(recipe: Any, reactor: Any) -> int:
    from twisted.internet import defer

    from fetchq.output import write_output
    from fetchq.store import SQLiteStore, StoreError

    store: Any
    state = recipe.state
    if state.url is not None:
        from fetchq.store.redis import RedisStore

        where = f"redis run {state.run!r}"
        try:
            store = await RedisStore.connect(state.url, state.run, reactor, renew=False)
        except StoreError as exc:
            print(f"fetchq: {exc}", file=sys.stderr)
            return PROBLEMS
    else:
        where = str(state.path)
        if not state.path.exists():
            print(
                f"fetchq: no state at {where}: the recipe has not run", file=sys.stderr
            )
            return PROBLEMS
        store = SQLiteStore(state.path)
    try:
        counts = await defer.maybeDeferred(store.counts)
        if counts.total == 0:
            print(
                f"fetchq: {where} holds nothing: the recipe has not run",
                file=sys.stderr,
            )
            return PROBLEMS
        written = await write_output(store, recipe.output.path)
    finally:
        await defer.maybeDeferred(store.close)
    left = counts.pending + counts.claimed
    more = f"; {left} rows left to do" if left else ""
    print(f"output: {recipe.output.path} ({written} records from {where}{more})")
    return OK


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="crawl the embedded demo site with the demo recipe",
        description=(
            "Start a local web site on 127.0.0.1 (latency that grows under "
            "load, 429 with Retry-After, some 500s, 404s and slow bodies) and "
            "crawl it with the demo recipe, showing progress and a summary."
        ),
    )
    parser.add_argument("--pages", type=int, default=3000, help="URLs to crawl")
    parser.add_argument(
        "--dir", default=None, help="where to put the run (default: a temp dir)"
    )
    parser.add_argument(
        "--report",
        metavar="HTML",
        default=None,
        help="where to write the HTML report (default: report.html in the run's dir)",
    )
    parser.set_defaults(handler=demo)


def demo(args: argparse.Namespace) -> int:
    """``fetchq demo``: the main job, against the embedded site."""
    from fetchq.demo.run import demo_run

    return _react(lambda reactor: demo_run(reactor, args.pages, args.dir, args.report))


def _react(start: Callable[[object], object]) -> int:
    """Run the reactor until the Deferred from ``start(reactor)`` fires; its
    result is the exit status.  fetchq installs its own Ctrl-C/SIGTERM
    handling, so Twisted's (which would exit 0) is off."""
    from twisted.internet import defer
    from twisted.internet import reactor as _reactor
    from twisted.python.failure import Failure

    reactor: Any = _reactor

    outcome: list[object] = []

    def go() -> None:
        d = defer.maybeDeferred(start, reactor)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    result = outcome[0] if outcome else PROBLEMS
    if isinstance(result, Failure):
        error = result.value
        print(_one_line(f"fetchq: {type(error).__name__}: {error}"), file=sys.stderr)
        return PROBLEMS
    return result if isinstance(result, int) else PROBLEMS


def defer_coroutine(coroutine: Any) -> object:
    """A coroutine as a Deferred (what :func:`_react` waits for)."""
    from twisted.internet import defer

    return defer.Deferred.fromCoroutine(coroutine)


def _add_fake(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fake",
        help="serve a fake SMS provider or X-style API on a loopback port",
        description=(
            "Serve a local fake of a remote service, to try sms and api "
            "recipes (or your own code) against: `sms` is Twilio-shaped "
            "(1 message/s per sender, a concurrency cap answering 20429, "
            "invalid-number errors); `api` is X-style (per-endpoint quota "
            "windows with x-rate-limit-* headers, 429s, next_token pages).  "
            "It prints its URL and the credentials to use, and runs until "
            "Ctrl-C."
        ),
    )
    parser.add_argument("service", choices=("sms", "api"), help="which fake")
    parser.add_argument(
        "--port", type=int, default=None, help="port (default: sms 8099, api 8098)"
    )
    parser.set_defaults(handler=fake)


def fake(args: argparse.Namespace) -> int:
    """``fetchq fake sms|api``: serve a fake until interrupted."""
    argv = [] if args.port is None else ["--port", str(args.port)]
    if args.service == "sms":
        from fetchq.testing.sms import main as serve_sms

        serve_sms(argv)
    else:
        from fetchq.testing.api import main as serve_api

        serve_api(argv)
    return 0


COMMANDS: list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
] = [
    _add_validate,
    _add_run,
    _add_output,
    _add_demo,
    _add_fake,
]
"""Functions that each add one subcommand."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand in :data:`COMMANDS`."""
    from fetchq import __version__

    parser = argparse.ArgumentParser(
        prog="fetchq",
        description="Slow remote work at a controlled pace, on Twisted.",
    )
    parser.add_argument("--version", action="version", version=f"fetchq {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fetchq`` command with ``argv`` (default: ``sys.argv[1:]``) and
    return its exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else PROBLEMS
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_usage(sys.stderr)
        print(
            "fetchq: error: a command is required (see fetchq --help)", file=sys.stderr
        )
        return PROBLEMS
    try:
        return handler(args)
    except KeyboardInterrupt:
        print("fetchq: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as exc:  # never a traceback: one line, and a non-zero exit
        print(
            _one_line(f"fetchq: internal error: {type(exc).__name__}: {exc}"),
            file=sys.stderr,
        )
        return PROBLEMS
