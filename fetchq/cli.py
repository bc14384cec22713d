"""The ``fetchq`` command.

::

    fetchq validate RECIPE [RECIPE ...] [--set KEY=VALUE ...] [--no-env]
    fetchq run RECIPE [--fresh] [--retry-failed] [--max-failures N|P%]
                      [--set KEY=VALUE ...] [--limit N] [--dry-run]
                      [--workers N] [--read-ahead ROWS]
    fetchq output RECIPE
    fetchq demo [--pages N] [--dir DIR]
    fetchq run RECIPE --admin [HOST:]PORT [--log-format human|json]
    fetchq ctl RECIPE|URL status|width N|rate R|pause|resume|hold L 60s|stop
    fetchq sms status RECIPE [--wait DURATION] [--every DURATION]
    fetchq schema > fetchq.schema.json

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
    _add_set(parser)
    parser.add_argument(
        "--no-env",
        action="store_true",
        help="check without the environment: ${NAME} of a variable that is "
        "not set is no problem (the values that hold one are listed as not "
        "checked); everything else is checked",
    )
    parser.set_defaults(handler=validate)


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change one of the recipe's values, as if the file held it "
        "(checked and reported like the file): KEY is a dotted path such as "
        'queue.width, VALUE is YAML (50/s, 1MB, \'{"X-A": "b"}\'); repeat '
        "for more",
    )


def validate(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``fetchq validate``: check each recipe named in ``args.recipes``."""
    from fetchq.recipe import RecipeError, check_recipe

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    status = OK
    overrides = getattr(args, "overrides", None) or ()
    no_env = bool(getattr(args, "no_env", False))
    for name in args.recipes:
        try:
            checked = check_recipe(name, overrides=overrides, no_env=no_env)
            line = f"{name}: ok ({summary(checked.recipe)})"
            if checked.unchecked:
                line += "; not checked without the environment: " + ", ".join(
                    f"{where} ({', '.join(f'${{{n}}}' for n in names)})"
                    for where, names in checked.unchecked.items()
                )
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
    parser.add_argument(
        "--admin",
        metavar="[HOST:]PORT",
        default=None,
        help="serve the admin API, live page and /metrics here (127.0.0.1 "
        "unless a host is given; the token goes to a 0600 file beside the "
        "state); default: the recipe's admin.listen",
    )
    parser.add_argument(
        "--metrics-open",
        action="store_true",
        default=None,
        help="serve /metrics without the admin token (for a scraper)",
    )
    parser.add_argument(
        "--log-format",
        choices=("human", "json"),
        default="human",
        help="the log on stderr (or --log-file): human lines, or one JSON "
        "object per event",
    )
    parser.add_argument(
        "--log-file", metavar="PATH", default=None, help="write the log here"
    )
    _add_set(parser)
    parser.add_argument(
        "--limit",
        metavar="N",
        type=_positive_int,
        default=None,
        help="read at most N rows of the input this time (the first N; after "
        "an earlier limited run, the next N); the rest stays unread and a "
        "later run goes on from there",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check the recipe, count the input, show the plan (what the "
        "state holds, what a run would do) and the pace, then exit: nothing "
        "is fetched or sent, no service contacted, nothing written",
    )
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of rows, not {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


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
    overrides = getattr(args, "overrides", None) or ()
    try:
        recipe = load_recipe(args.recipe, overrides=overrides)
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
    limit = getattr(args, "limit", None)
    if getattr(args, "dry_run", False):
        from fetchq.plan import dry_run

        return dry_run(
            recipe,
            sys.stdout,
            fresh=args.fresh,
            retry_failed=args.retry_failed,
            limit=limit,
            max_failures=max_failures,
        )
    if limit is not None and recipe.state.url is not None:
        print(
            "fetchq: error: --limit needs a local state: with state.url (Redis) "
            "every worker reads from the run's shared input",
            file=sys.stderr,
        )
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
    if limit is not None:
        options["limit"] = limit
    # A worker under --workers serves no admin API (its parent would be the
    # place for one): N workers would all ask for the same port.
    admin = None if args.as_worker else _admin_options(recipe, args)
    log_file = None
    try:
        if getattr(args, "log_file", None):
            log_file = open(args.log_file, "a", encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        print(f"fetchq: error: --log-file: {exc}", file=sys.stderr)
        return PROBLEMS
    from fetchq.logs import start_logging

    start_logging(getattr(args, "log_format", "human"), log_file)
    undo: list[Callable[[], None]] = []
    try:
        return _react(lambda reactor: _start_run(recipe, reactor, options, admin, undo))
    finally:
        for step in undo:
            step()
        if log_file is not None:
            log_file.close()


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
    if args.workers is not None and getattr(args, "admin", None) is not None:
        return (
            "--admin is for one process; it cannot be used with --workers "
            "(start the workers with fetchq run, one with --admin)"
        )
    return None


def _start_workers(recipe: Any, reactor: object, args: argparse.Namespace) -> object:
    from fetchq.workers import Workers

    worker_args = []
    for override in getattr(args, "overrides", None) or ():
        worker_args += ["--set", override]
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


def _admin_options(recipe: Any, args: argparse.Namespace) -> dict[str, Any] | None:
    """Where the admin server listens (``--admin``, else the recipe's
    ``admin.listen``), or None for no admin server."""
    spec = getattr(recipe, "admin", None)
    listen = getattr(args, "admin", None) or getattr(spec, "listen", None)
    if listen is None:
        return None
    metrics_open = getattr(args, "metrics_open", None)
    if metrics_open is None:
        metrics_open = bool(getattr(spec, "metrics_open", False))
    return {"listen": str(listen), "metrics_open": metrics_open}


def _start_run(
    recipe: Any,
    reactor: object,
    options: dict[str, Any],
    admin: dict[str, Any] | None = None,
    undo: list[Callable[[], None]] | None = None,
) -> object:
    from fetchq.admin.attach import attach_admin, attach_log
    from fetchq.run import Run

    run: Run
    if recipe.state.url is not None:
        from fetchq.shared_run import SharedRun

        run = SharedRun(recipe, reactor, handle_signals=True, **options)
    else:
        options.pop("worker", None)
        run = Run(recipe, reactor, handle_signals=True, **options)
    if admin is not None:
        # Imported before the collector freezes what the run starts with:
        # the server's modules then cost the run's collections nothing
        # (unfrozen, they made the admin cost ~10% of a CPU-bound run).
        import fetchq.admin.controls
        import fetchq.admin.server  # noqa: F401
    restore = _tune_gc()
    if undo is not None:
        undo.append(restore)
        undo.append(_tune_switching())
    if admin is None:
        attach_log(run)
        return run.run()
    finished = run.run()
    try:
        server = attach_admin(
            run, reactor, admin["listen"], metrics_open=admin["metrics_open"]
        )
    except Exception as exc:  # a bad address, a port taken: stop, one line
        print(_one_line(f"fetchq: error: --admin: {exc}"), file=sys.stderr)
        run.interrupt(15)
        return finished.addCallback(lambda _: PROBLEMS)
    print(
        f"fetchq: admin on {server.url} (token in {server.token_file}); "
        "open the page with: fetchq ctl "
        f"{recipe.source} page",
        file=sys.stderr,
    )
    return finished


GC_THRESHOLD = 10_000
"""Net new container objects between two young-generation collections
during a run (Python's default is 700)."""

SWITCH_INTERVAL = 0.0002
"""Seconds another thread of the process may hold the GIL once the event
loop wants it back, during a run (Python's default is 0.005)."""


def _tune_switching() -> Callable[[], None]:
    """A shorter GIL switch interval while a run goes on; returns what puts
    it back (as :func:`_tune_gc`).

    The event loop gives the GIL up at every send and receive; while another
    thread of the process computes (a parser in a thread pool, a hook's
    work), getting it back waits up to the switch interval each time, so
    every request waited several times 5 ms: a spinning thread cut a run to
    a quarter of its speed (``bench_pacing --only hogthread``: a site of
    capacity 24, 2,500 pages, fixed width 24 took 30-36 s at 5 ms, 9.1 s at
    0.5 ms, 7.5 s at 0.2 ms).  With one thread, nothing changes.
    """
    before = sys.getswitchinterval()
    sys.setswitchinterval(min(before, SWITCH_INTERVAL))
    return lambda: sys.setswitchinterval(before)


def _tune_gc() -> Callable[[], None]:
    """Fewer, cheaper cyclic garbage collections while a run goes on; returns
    what puts the collector back as it was (``fetchq run`` calls it when the
    run ends, so ``main()`` called in a longer-lived process leaves no trace).

    Everything loaded so far (modules, the recipe, the run's objects) lives
    as long as the run: ``gc.freeze()`` moves it out of the collector's
    sight, so each collection of the oldest generation does not walk it
    again (only if nothing was frozen before: the caller's freeze is left
    alone).  A run's objects mostly die young by reference counting (each
    request's Deferreds, headers, records), so a young generation of
    :data:`GC_THRESHOLD` objects finds about as much garbage per collection
    as the default's 700, in fewer, larger collections; the garbage a
    collection reclaims waits for at most that many new objects.
    """
    import gc

    thresholds = gc.get_threshold()
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])

    def restore() -> None:
        gc.set_threshold(*thresholds)
        if freeze:
            gc.unfreeze()

    return restore


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
            "crawl it with the demo recipe, showing progress and a summary.  "
            "Run it again with the same --dir to resume."
        ),
    )
    parser.add_argument("--pages", type=int, default=1500, help="URLs to crawl")
    parser.add_argument(
        "--dir",
        default=None,
        help="where to put the run (default: a temp dir); a dir with an "
        "earlier demo in it is resumed",
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


def _add_ctl(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from fetchq.admin.ctl import add_parser

    add_parser(commands)


def _add_fake(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "fake",
        help="serve a fake SMS provider, X-style API or GitHub API on a loopback port",
        description=(
            "Serve a local fake of a remote service, to try sms and api "
            "recipes (or your own code) against: `sms` is Twilio-shaped "
            "(1 message/s per sender, a concurrency cap answering 20429, "
            "invalid-number errors); `api` is X-style (per-endpoint quota "
            "windows with x-rate-limit-* headers, 429s, next_token pages); "
            "`github` is GitHub's REST API for issues (Link pages, "
            "x-ratelimit-* headers, secondary limits answered 403 with "
            "Retry-After).  "
            "It prints its URL and the credentials to use, and runs until "
            "Ctrl-C."
        ),
    )
    parser.add_argument("service", choices=("sms", "api", "github"), help="which fake")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: sms 8099, api 8098, github 8097)",
    )
    parser.set_defaults(handler=fake)


def fake(args: argparse.Namespace) -> int:
    """``fetchq fake sms|api``: serve a fake until interrupted."""
    argv = [] if args.port is None else ["--port", str(args.port)]
    if args.service == "sms":
        from fetchq.testing.sms import main as serve_sms

        serve_sms(argv)
    elif args.service == "github":
        from fetchq.testing.github import main as serve_github

        serve_github(argv)
    else:
        from fetchq.testing.api import main as serve_api

        serve_api(argv)
    return 0


def _add_sms(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "sms",
        help="SMS tools: read what became of the messages a run sent",
        description="Tools for kind: sms recipes.",
    )
    tools = parser.add_subparsers(title="tools", metavar="TOOL")
    status = tools.add_parser(
        "status",
        help="read each sent message's delivery status into the output",
        description=(
            "For every message the recipe's run sent (its sid is in the "
            "state) whose status is not final yet, read its status from the "
            "provider (delivered, undelivered or failed with an error code; "
            "queued, sending or sent are not final) at the recipe's pace "
            "(queue.width, queue.rate), and add it to the message's record as "
            "`delivery`; then rewrite the output.  Final statuses are kept "
            "in the state and never read again; run it again to check the "
            "others, or wait here with --wait.  Exit 0, or 3 if the "
            "provider refused the credentials."
        ),
    )
    status.add_argument("recipe", metavar="RECIPE", help="a kind: sms recipe")
    status.add_argument(
        "--wait",
        metavar="DURATION",
        default=None,
        help="keep checking the messages not final yet, every --every, for "
        "at most this long (10m, 1h)",
    )
    status.add_argument(
        "--every",
        metavar="DURATION",
        default="30s",
        help="time between checks while waiting (default: 30s)",
    )
    _add_set(status)
    status.set_defaults(handler=sms_status)
    parser.set_defaults(handler=_needs_tool(parser))


def _needs_tool(parser: argparse.ArgumentParser) -> Handler:
    def handler(args: argparse.Namespace) -> int:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a tool is required (status)", file=sys.stderr)
        return PROBLEMS

    return handler


def sms_status(args: argparse.Namespace) -> int:
    """``fetchq sms status``: read the sent messages' delivery statuses."""
    from fetchq.recipe import RecipeError, SmsRecipe, load_recipe
    from fetchq.recipe.units import parse_duration
    from fetchq.store import StoreError

    durations: dict[str, float | None] = {}
    for name in ("wait", "every"):
        text = getattr(args, name)
        try:
            durations[name] = None if text is None else parse_duration(text)
        except ValueError as exc:
            print(f"fetchq: error: --{name}: {exc}", file=sys.stderr)
            return PROBLEMS
    every = durations["every"]
    if every is None or every <= 0:
        print("fetchq: error: --every: must be more than 0", file=sys.stderr)
        return PROBLEMS
    try:
        recipe = load_recipe(args.recipe, overrides=args.overrides or ())
    except RecipeError as exc:
        for problem in exc.problems:
            print(str(problem), file=sys.stderr)
        return PROBLEMS
    if not isinstance(recipe, SmsRecipe):
        print(
            f"{args.recipe}: fetchq sms status reads kind: sms recipes, not "
            f"kind: {recipe.kind}",
            file=sys.stderr,
        )
        return PROBLEMS

    def start(reactor: Any) -> object:
        from fetchq.sms_status import DeliveryCheck

        try:
            check = DeliveryCheck(
                recipe,
                reactor,
                sys.stderr,
                wait=durations["wait"],
                every=every,
                handle_signals=True,
            )
        except (ValueError, StoreError) as exc:  # no state, or a run holds it
            print(_one_line(f"fetchq: error: {exc}"), file=sys.stderr)
            return PROBLEMS
        return check.run()

    return _react(start)


def _add_schema(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "schema",
        help="print the recipe schema as JSON Schema (for editors)",
        description=(
            "Print the JSON Schema (draft 2020-12) of fetchq recipes, made "
            "from the same schema as `fetchq validate` and the README's "
            "reference: `fetchq schema > fetchq.schema.json`, then point your "
            "editor's YAML support at it for completion and checks as you "
            "type.  It checks the shape of a recipe (keys, types, units); "
            "`fetchq validate` checks everything."
        ),
    )
    parser.set_defaults(handler=schema)


def schema(args: argparse.Namespace) -> int:
    """``fetchq schema``: the recipe schema as JSON Schema, on stdout."""
    from fetchq.recipe.jsonschema import schema_text

    sys.stdout.write(schema_text())
    return OK


COMMANDS: list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
] = [
    _add_validate,
    _add_run,
    _add_output,
    _add_demo,
    _add_fake,
    _add_ctl,
    _add_sms,
    _add_schema,
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
