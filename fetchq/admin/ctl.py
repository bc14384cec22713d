"""``fetchq ctl``: talk to a running ``fetchq run --admin`` (or any admin
server) from a shell.

::

    fetchq ctl TARGET status | lanes | jobs [pending|underway] [LANE]
    fetchq ctl TARGET width 20 | rate 50/s | rate none
    fetchq ctl TARGET pause | resume | stop
    fetchq ctl TARGET hold HOST 60s | release HOST
    fetchq ctl TARGET lane HOST width 2 | lane HOST rate 1/s
    fetchq ctl TARGET cancel ID | priority ID -5
    fetchq ctl TARGET controller on|off [MIN MAX]
    fetchq ctl TARGET page         # a one-time link that opens the live page
    fetchq ctl TARGET metrics

TARGET is the recipe (its admin file beside the state holds the URL and
the token) or the server's URL (the token then from ``--token-file`` or
``$FETCHQ_ADMIN_TOKEN``).  Prints what the server answered (``--json``: the
JSON itself); a refusal is one line on stderr and exit 1, a problem reaching
the server exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from fetchq.admin.security import TOKEN_ENV, read_token_file

__all__ = ["CtlError", "add_parser", "admin_file", "ctl", "request"]

API = "/api/v1/"
_TIMEOUT = 10.0


class CtlError(Exception):
    """The command cannot be done; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def admin_file(state_path: Path) -> Path:
    """Where a run's admin file is: beside its state."""
    return state_path.with_name(state_path.name + ".admin")


def _target(args: argparse.Namespace) -> tuple[str, str]:
    """The server's URL and the token."""
    target: str = args.target
    if target.startswith(("http://", "https://")):
        token = None
        if args.token_file:
            try:
                token = Path(args.token_file).read_text("utf-8").strip()
            except OSError as e:
                raise CtlError(f"--token-file: {e}") from None
            if token.startswith("{"):
                token = json.loads(token).get("token")
        token = token or os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise CtlError(
                f"no token: give --token-file, set ${TOKEN_ENV}, or name the recipe"
            )
        return target.rstrip("/"), token
    from fetchq.recipe import RecipeError, load_recipe

    try:
        recipe = load_recipe(target, environ=_AnyEnv())
    except RecipeError as e:
        raise CtlError(str(e.problems[0]) if e.problems else str(e)) from None
    except OSError as e:
        raise CtlError(f"{target}: {e}") from None
    try:
        data = read_token_file(admin_file(recipe.state.path))
    except ValueError as e:
        raise CtlError(str(e)) from None
    return str(data["url"]).rstrip("/"), str(data["token"])


class _AnyEnv(Mapping[str, str]):
    """The environment, with a stand-in for each variable it lacks: ctl
    reads a recipe only for where its state is, and needs none of its
    secrets."""

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, "unset")

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def request(
    url: str, token: str, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    """One API call: ``(status, parsed JSON or text)``.

    Raises:
        CtlError: the server cannot be reached.
    """
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as answer:
            status, raw, kind = answer.status, answer.read(), answer.headers
    except urllib.error.HTTPError as e:
        status, raw, kind = e.code, e.read(), e.headers
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CtlError(f"cannot reach {url}: {reason}") from None
    text = raw.decode("utf-8", "replace")
    if (kind.get("content-type") or "").startswith("application/json"):
        return status, json.loads(text)
    return status, text


def _command(words: list[str]) -> tuple[str, str, Any]:
    """(method, path, body) for a command's words."""
    if not words:
        raise CtlError("give a command (status, width N, rate R, pause, ...)")
    verb, rest = words[0], words[1:]

    def need(n: int, usage: str) -> list[str]:
        if len(rest) != n:
            raise CtlError(f"usage: fetchq ctl TARGET {usage}")
        return rest

    if verb == "status":
        need(0, "status")
        return "GET", "status", None
    if verb == "lanes":
        need(0, "lanes")
        return "GET", "lanes?" + urlencode({"sort": "backlog", "limit": 50}), None
    if verb == "jobs":
        if len(rest) > 2:
            raise CtlError("usage: fetchq ctl TARGET jobs [pending|underway] [LANE]")
        query: dict[str, Any] = {"state": rest[0] if rest else "pending"}
        query["limit"] = 50
        if len(rest) == 2:
            query["lane"] = rest[1]
        return "GET", "jobs?" + urlencode(query), None
    if verb == "width":
        (text,) = need(1, "width N")
        try:
            return "POST", "width", {"width": int(text)}
        except ValueError:
            raise CtlError(f"width must be a whole number, not {text!r}") from None
    if verb == "rate":
        (text,) = need(1, "rate 50/s|none")
        return "POST", "rate", {"rate": None if text == "none" else text}
    if verb in ("pause", "resume", "stop"):
        need(0, verb)
        return "POST", verb, {}
    if verb == "hold":
        lane, duration = need(2, "hold LANE DURATION")
        return "POST", "lanes/" + quote(lane, safe=""), {"hold": duration}
    if verb == "release":
        (lane,) = need(1, "release LANE")
        return "POST", "lanes/" + quote(lane, safe=""), {"release": True}
    if verb == "lane":
        lane, what, value = need(3, "lane LANE width|rate VALUE")
        if what not in ("width", "rate"):
            raise CtlError("usage: fetchq ctl TARGET lane LANE width|rate VALUE")
        parsed: Any = value
        if value in ("none", "default"):
            parsed = None if value == "none" else "default"
        elif what == "width":
            try:
                parsed = int(value)
            except ValueError:
                raise CtlError(f"width must be a whole number, not {value!r}") from None
        return "POST", "lanes/" + quote(lane, safe=""), {what: parsed}
    if verb == "cancel":
        (job,) = need(1, "cancel ID")
        return "POST", f"jobs/{quote(job, safe='')}/cancel", {}
    if verb == "priority":
        job, text = need(2, "priority ID NUMBER")
        try:
            number = float(text)
        except ValueError:
            raise CtlError(f"priority must be a number, not {text!r}") from None
        priority = int(number) if number.is_integer() else number
        return "POST", f"jobs/{quote(job, safe='')}/priority", {"priority": priority}
    if verb == "controller":
        if not rest or rest[0] not in ("on", "off") or len(rest) not in (1, 3):
            raise CtlError("usage: fetchq ctl TARGET controller on|off [MIN MAX]")
        body: dict[str, Any] = {"attach": rest[0] == "on"}
        if len(rest) == 3:
            try:
                body["min_width"], body["max_width"] = int(rest[1]), int(rest[2])
            except ValueError:
                raise CtlError("MIN and MAX must be whole numbers") from None
        return "POST", "controller", body
    if verb == "page":
        need(0, "page")
        return "POST", "login-link", {}
    if verb == "metrics":
        need(0, "metrics")
        return "GET", "/metrics", None
    raise CtlError(f"unknown command {verb!r} (see fetchq ctl --help)")


def _show(verb: str, answer: Any, out: TextIO) -> None:
    if not isinstance(answer, dict):
        out.write(str(answer))
        return
    if verb == "status":
        rows = answer.get("rows") or {}
        outcomes = answer.get("outcomes") or {}
        rate = answer.get("rate")
        lines = [
            f"{answer.get('name')} ({answer.get('engine')}): {answer.get('state')}",
            f"width {answer.get('width')}, rate "
            f"{'unlimited' if rate is None else f'{rate:g}/s'}, "
            f"in flight {answer.get('in_flight')}",
        ]
        if rows:
            lines.append(
                f"rows: {rows.get('pending')} pending, {rows.get('claimed')} "
                f"claimed, {rows.get('finished')} done {rows.get('done')}"
            )
        lines.append(
            "jobs: "
            + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))
            + f"; {answer.get('throughput') or 0:.1f}/s"
        )
        holds = answer.get("holds") or []
        if holds:
            lines.append(
                "holds: "
                + ", ".join(f"{h['lane'] or 'queue'} {h['for']:.0f}s" for h in holds)
            )
        controller = answer.get("controller") or {}
        if controller.get("attached"):
            lines.append(
                f"controller: {controller.get('min_width')}-"
                f"{controller.get('max_width')}"
            )
        out.write("\n".join(lines) + "\n")
    elif verb == "page":
        out.write(f"{answer['url']}\n(opens once; within 10 minutes)\n")
    elif verb == "lanes":
        for lane in answer.get("lanes", []):
            held = f", held {lane['held_for']:.0f}s" if lane.get("held_for") else ""
            out.write(
                f"{lane['lane']}: {lane['pending']} pending, "
                f"{lane['underway']} underway{held}\n"
            )
    elif verb == "jobs":
        for job in answer.get("jobs", []):
            out.write(f"{job['id']}\t{job.get('lane') or '-'}\t{job.get('what')}\n")
        if answer.get("next"):
            out.write(f"(more: cursor {answer['next']})\n")
    else:
        out.write(json.dumps(answer, sort_keys=True) + "\n")


def ctl(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``fetchq ctl``: run one command against an admin server."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    try:
        method, path, body = _command(list(args.words))
        url, token = _target(args)
        full = path if path.startswith("/") else API + path
        status, answer = request(url, token, method, full, body)
    except CtlError as e:
        print(f"fetchq ctl: {e}", file=err)
        return e.code
    if status >= 400:
        message = answer.get("error") if isinstance(answer, dict) else answer
        print(f"fetchq ctl: {status}: {message}", file=err)
        return 1
    if args.json and isinstance(answer, dict):
        out.write(json.dumps(answer, indent=1, sort_keys=True) + "\n")
    else:
        _show(args.words[0], answer, out)
    return 0


def add_parser(commands: Any) -> None:
    """Add ``ctl`` to the ``fetchq`` command's subparsers."""
    parser = commands.add_parser(
        "ctl",
        help="watch and steer a running `fetchq run --admin`",
        description=(__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", metavar="TARGET", help="the recipe, or the URL")
    parser.add_argument("words", nargs="+", metavar="COMMAND", help="what to do")
    parser.add_argument("--token-file", default=None, help="read the token here")
    parser.add_argument("--json", action="store_true", help="print the JSON answer")
    parser.set_defaults(handler=ctl)
