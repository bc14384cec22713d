"""A fake GitHub REST API: repository issues, ``Link`` pagination, and the
primary and secondary rate limits, as GitHub's documentation describes them.

For unit tests it runs in-process on a ``task.Clock`` behind
``treq.testing.StubTreq``; :func:`serve` puts it on a loopback port::

    fake = FakeGitHub(clock, repos={"octo/hello": 250})
    served = serve(reactor, repos={"octo/hello": 250})  # served.url, .fake

What it does, each point from GitHub's REST documentation:

- ``GET /repos/{owner}/{repo}/issues`` lists a repository's issues (pull
  requests included, marked by a ``pull_request`` key), newest first, as a
  JSON array; ``state`` (``open`` default, ``closed``, ``all``; anything
  else 422), ``per_page`` (default 30, at most 100), ``page`` (from 1; past
  the end an empty array).  ``GET /repositories/{id}/issues`` is the same
  list by the repository's id: the form GitHub's own ``Link`` URLs take.
  An unknown repository is 404 ``{"message": "Not Found"}``.
- **Pagination** by a ``Link`` header (RFC 8288): ``rel="next"`` and
  ``rel="last"`` while there are more pages, ``rel="prev"`` and
  ``rel="first"`` after the first; absolute URLs on the host the request
  named, through ``/repositories/{id}/issues``.
- **Authentication**: ``Authorization: Bearer <token>`` (or ``token
  <token>``); a wrong token is 401 ``Bad credentials``; none at all is
  allowed at the unauthenticated limit (60 an hour).  A request without a
  ``User-Agent`` is refused with 403; an ``X-GitHub-Api-Version`` that is
  not one of :data:`API_VERSIONS` is 400.
- **Primary rate limit**: ``limit`` requests per ``window`` (5,000 an hour),
  counted per token from the window's first request.  Every answer carries
  ``x-ratelimit-limit``, ``-remaining``, ``-used``, ``-reset`` (epoch
  seconds) and ``-resource: core``.  Past the limit: 403 (or 429 with
  ``limit_status=429``), ``x-ratelimit-remaining: 0`` and "API rate limit
  exceeded".
- **Secondary rate limits**: more than ``max_concurrent`` requests in flight,
  or more than ``per_minute`` in a minute (a GET is one point), get 403 (or
  429) with ``Retry-After: 60`` and "You have exceeded a secondary rate
  limit"; ``retry_after_on_secondary=False`` leaves Retry-After out (then
  GitHub says to wait at least a minute).  :meth:`FakeGitHub.inject` scripts
  them too.

Counters: ``requests`` (authorised calls), ``statuses`` per status,
``secondary`` and ``primary`` refusals, ``max_in_flight``.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import attrs
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from fetchq.testing.clock import run_until_idle
from fetchq.testing.served import Served, serve_resource

__all__ = [
    "API_VERSIONS",
    "DEFAULT_REPOS",
    "DEFAULT_TOKEN",
    "FakeGitHub",
    "run_until_idle",
    "serve",
]

DEFAULT_TOKEN = "ghp_faketoken"
"""The token the fake accepts unless told otherwise."""

API_VERSIONS = frozenset({"2022-11-28", "2026-03-10"})
"""The ``X-GitHub-Api-Version`` values GitHub accepts."""

DEFAULT_REPOS: dict[str, int] = {"octocat/hello-world": 45, "fetchq/fetchq": 7}
"""Repositories and how many issues each has, unless told otherwise."""

_DOCS = "https://docs.github.com/rest"
_REPO_PATH = re.compile(r"/repos/([^/]+)/([^/]+)/issues")
_ID_PATH = re.compile(r"/repositories/([0-9]+)/issues")
_SECONDARY = (
    "You have exceeded a secondary rate limit. Please wait a few minutes "
    "before you try again. If you reach out to GitHub Support for help, "
    "please include the request ID."
)


@attrs.frozen
class _Answer:
    status: int
    body: Any
    headers: tuple[tuple[str, str], ...] = ()


@attrs.define
class _Window:
    start: float
    used: int = 0


def _message(status: int, message: str, doc: str = "") -> _Answer:
    return _Answer(
        status,
        {
            "message": message,
            "documentation_url": f"{_DOCS}{doc}",
            "status": str(status),
        },
    )


class FakeGitHub(Resource):
    """The fake API, a ``twisted.web`` resource (see the module docstring).

    Args:
        clock: an ``IReactorTime`` (a ``task.Clock``, or the reactor).
        repos: ``{"owner/name": number of issues}``.
        token: the token it accepts.
        limit: primary requests per window for a token (5,000).
        window: the primary window in seconds (an hour).
        limit_status: the status of a primary refusal (403 or 429).
        max_concurrent: most requests in flight at once (100).
        per_minute: most requests a minute (900 points, a GET is one).
        secondary_status: the status of a secondary refusal (403 or 429).
        retry_after_on_secondary: send ``Retry-After: 60`` with it.
        latency: seconds before each answer.
    """

    isLeaf = True

    def __init__(
        self,
        clock: Any,
        repos: Mapping[str, int] | None = None,
        *,
        token: str = DEFAULT_TOKEN,
        limit: int = 5000,
        window: float = 3600.0,
        limit_status: int = 403,
        max_concurrent: int = 100,
        per_minute: int = 900,
        secondary_status: int = 403,
        retry_after_on_secondary: bool = True,
        latency: float = 0.0,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        if limit_status not in (403, 429) or secondary_status not in (403, 429):
            raise ValueError("limit_status and secondary_status must be 403 or 429")
        if limit < 0 or not window > 0 or max_concurrent < 1 or per_minute < 1:
            raise ValueError("bad limits")
        if not latency >= 0:
            raise ValueError(f"latency must be >= 0, not {latency!r}")
        self.clock = clock
        self.repos = dict(DEFAULT_REPOS if repos is None else repos)
        self._ids = {name: 1_000_000 + n for n, name in enumerate(sorted(self.repos))}
        self._names = {number: name for name, number in self._ids.items()}
        self.token = token
        self.limit = limit
        self.window = window
        self.limit_status = limit_status
        self.max_concurrent = max_concurrent
        self.per_minute = per_minute
        self.secondary_status = secondary_status
        self.retry_after_on_secondary = retry_after_on_secondary
        self.latency = latency
        self.requests = 0
        self.statuses: Counter[int] = Counter()
        self.primary = 0
        self.secondary = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._windows: dict[str, _Window] = {}
        self._recent: dict[str, deque[float]] = {}
        self._scripted: deque[_Answer] = deque()

    # ------------------------------------------------------------------
    # For tests

    def repo_id(self, name: str) -> int:
        """The id GitHub's ``/repositories/{id}`` URLs use for ``name``."""
        return self._ids[name]

    def inject(
        self, status: int, *, retry_after: float | None = None, count: int = 1
    ) -> None:
        """Refuse the next ``count`` authorised requests as a secondary limit
        (``status`` 403 or 429, with ``Retry-After`` when given)."""
        headers = () if retry_after is None else (("Retry-After", f"{retry_after:g}"),)
        for _ in range(count):
            self._scripted.append(
                _Answer(status, _message(status, _SECONDARY).body, headers)
            )

    # ------------------------------------------------------------------
    # Serving

    def render(self, request: Any) -> bytes | int:
        """Answer ``request`` (now, or ``latency`` seconds later)."""
        answer = self._answer(request)
        self.statuses[answer.status] += 1
        if not self.latency:
            return self._write(request, answer)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def finish() -> None:
            self.in_flight -= 1
            if not gone:
                request.write(self._write(request, answer))
                request.finish()

        self.clock.callLater(self.latency, finish)
        return NOT_DONE_YET

    def _write(self, request: Any, answer: _Answer) -> bytes:
        request.setResponseCode(answer.status)
        for name, value in answer.headers:
            request.setHeader(name, value)
        request.setHeader("Content-Type", "application/json; charset=utf-8")
        return json.dumps(answer.body, separators=(",", ":")).encode()

    def _answer(self, request: Any) -> _Answer:
        if not request.getHeader("user-agent"):
            return _Answer(
                403,
                "Request forbidden by administrative rules. Please make sure "
                "your request has a User-Agent header.",
            )
        version = request.getHeader("x-github-api-version")
        if version is not None and version not in API_VERSIONS:
            return _message(400, f"API version {version} is not supported.")
        who = self._who(request.getHeader("authorization"))
        if who is None:
            return _message(401, "Bad credentials")
        now = self.clock.seconds()
        limit = self.limit if who != "" else 60
        window = self._windows.get(who)
        if window is None or now >= window.start + self.window:
            window = self._windows[who] = _Window(now)
        reset = math.ceil(window.start + self.window)
        if window.used >= limit:
            self.primary += 1
            answer = _message(
                self.limit_status,
                f"API rate limit exceeded for {who or 'this address'}.",
                "/overview/rate-limits-for-the-rest-api",
            )
            return attrs.evolve(answer, headers=self._rate(limit, limit, reset))
        if self._scripted:
            scripted = self._scripted.popleft()
            self.secondary += 1
            return attrs.evolve(
                scripted,
                headers=scripted.headers + self._rate(limit, window.used, reset),
            )
        recent = self._recent.setdefault(who, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if self.in_flight >= self.max_concurrent or len(recent) >= self.per_minute:
            self.secondary += 1
            answer = _message(self.secondary_status, _SECONDARY)
            headers = self._rate(limit, window.used, reset)
            if self.retry_after_on_secondary:
                headers = (("Retry-After", "60"), *headers)
            return attrs.evolve(answer, headers=headers)
        recent.append(now)
        window.used += 1
        self.requests += 1
        answer = self._route(request)
        return attrs.evolve(
            answer, headers=answer.headers + self._rate(limit, window.used, reset)
        )

    def _who(self, authorization: str | None) -> str | None:
        """The token's identity ("" when anonymous), or None for a bad one."""
        if authorization is None:
            return ""
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() not in ("bearer", "token") or credential != self.token:
            return None
        return credential

    def _rate(self, limit: int, used: int, reset: int) -> tuple[tuple[str, str], ...]:
        return (
            ("x-ratelimit-limit", str(limit)),
            ("x-ratelimit-remaining", str(max(0, limit - used))),
            ("x-ratelimit-used", str(used)),
            ("x-ratelimit-reset", str(reset)),
            ("x-ratelimit-resource", "core"),
        )

    def _route(self, request: Any) -> _Answer:
        path = (request.path or b"").decode("utf-8", "replace")
        found = _REPO_PATH.fullmatch(path)
        name: str | None = None
        if found is not None:
            name = f"{found.group(1)}/{found.group(2)}".lower()
            name = next((n for n in self.repos if n.lower() == name), None)
        else:
            by_id = _ID_PATH.fullmatch(path)
            if by_id is not None:
                name = self._names.get(int(by_id.group(1)))
        if name is None:
            return _message(404, "Not Found", "/issues/issues#list-repository-issues")
        if request.method != b"GET":
            return _message(404, "Not Found")
        query = {
            key.decode("utf-8", "replace"): values[0].decode("utf-8", "replace")
            for key, values in (request.args or {}).items()
            if values
        }
        return self._issues(request, name, query)

    def _issues(self, request: Any, name: str, query: dict[str, str]) -> _Answer:
        state = query.get("state", "open")
        if state not in ("open", "closed", "all"):
            return _Answer(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "value": state,
                            "resource": "Issue",
                            "field": "state",
                            "code": "invalid",
                        }
                    ],
                    "documentation_url": f"{_DOCS}/issues/issues",
                    "status": "422",
                },
            )
        try:
            per_page = min(max(int(query.get("per_page", "30")), 1), 100)
            page = max(int(query.get("page", "1")), 1)
        except ValueError:
            per_page, page = 30, 1  # GitHub ignores what it cannot read
        count = self.repos[name]
        numbers = [
            n
            for n in range(count, 0, -1)
            if state == "all" or (state == "closed") == (n % 5 == 0)
        ]
        chosen = numbers[(page - 1) * per_page : page * per_page]
        owner, repo = name.split("/")
        issues = [self._issue(owner, repo, n) for n in chosen]
        last = max(1, math.ceil(len(numbers) / per_page))
        links = []
        base = self._base(request) + f"/repositories/{self._ids[name]}/issues?"
        kept = {k: v for k, v in query.items() if k != "page"}

        def link(number: int, rel: str) -> str:
            target = base + urlencode({**kept, "page": str(number)})
            return f'<{target}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = (("Link", ", ".join(links)),) if links else ()
        return _Answer(200, issues, headers)

    def _base(self, request: Any) -> str:
        host = request.getHeader("host") or "api.github.com"
        scheme = "https" if request.isSecure() else "http"
        return f"{scheme}://{host}"

    def _issue(self, owner: str, repo: str, number: int) -> dict[str, Any]:
        api = f"https://api.github.com/repos/{owner}/{repo}"
        issue: dict[str, Any] = {
            "id": self._ids[f"{owner}/{repo}"] * 1000 + number,
            "node_id": f"I_fake{number}",
            "number": number,
            "title": f"Issue {number} of {owner}/{repo}",
            "state": "closed" if number % 5 == 0 else "open",
            "user": {"login": f"user{number % 7}", "id": number % 7},
            "labels": [],
            "comments": number % 3,
            "url": f"{api}/issues/{number}",
            "html_url": f"https://github.com/{owner}/{repo}/issues/{number}",
        }
        if number % 4 == 0:
            issue["pull_request"] = {"url": f"{api}/pulls/{number}"}
        return issue


def serve(
    reactor: Any, port: int = 0, *, interface: str = "127.0.0.1", **kw: Any
) -> Served[FakeGitHub]:
    """Serve a :class:`FakeGitHub` (made with ``reactor`` as its clock and
    ``**kw``) on ``interface:port`` (0: any free port)."""
    return serve_resource(reactor, FakeGitHub(reactor, **kw), port, interface)


def main(argv: list[str] | None = None, reactor: Any = None) -> None:
    """``python -m fetchq.testing.github --port N``: serve until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m fetchq.testing.github",
        description="A fake GitHub REST API (issues, Link pages, rate limits) "
        "on a loopback port.",
    )
    parser.add_argument("--port", type=int, default=8097)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--latency", type=float, default=0.02)
    options = parser.parse_args(argv)
    if reactor is None:
        from twisted.internet import reactor as default

        reactor = default
    served = serve(
        reactor,
        options.port,
        interface=options.interface,
        token=options.token,
        latency=options.latency,
    )
    print(f"fake GitHub API on {served.url}", flush=True)
    print(f"  GITHUB_TOKEN={served.fake.token}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
