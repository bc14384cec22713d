"""The admin server: JSON API, live page and ``/metrics``, on twisted.web.

::

    server = AdminServer(QueueControls(queue), reactor, port=8765)
    server.start()                 # listens on 127.0.0.1:8765
    print(server.login_link())     # one-time link for a browser

Routes (every one but ``/login`` needs the token: ``Authorization: Bearer
TOKEN``, or the page's cookie; ``/metrics`` may be left open)::

    GET  /                      the live page
    GET  /login?code=CODE       one-time link: sets the cookie, then to /
    GET  /metrics               Prometheus text format
    GET  /api/v1/status         counts, width, rate, throughput, holds, ...
    GET  /api/v1/lanes?sort=backlog|name&limit=&cursor=
    GET  /api/v1/jobs?state=pending|underway&lane=&limit=&cursor=
    GET  /api/v1/timeline       the charts' data (Timeline.to_json())
    POST /api/v1/width          {"width": 20}
    POST /api/v1/rate           {"rate": "50/s" | 50 | null, "burst": 1}
    POST /api/v1/lanes/KEY      {"width": 2, "rate": "1/s", "hold": "60s",
                                 "release": true}   (any of them)
    POST /api/v1/pause, /api/v1/resume, /api/v1/stop
    POST /api/v1/jobs/ID/cancel
    POST /api/v1/jobs/ID/priority   {"priority": -1}
    POST /api/v1/controller     {"attach": true, "min_width": 2, "max_width": 50}
    POST /api/v1/login-link     a fresh one-time link for the page

Checks, in order: ``Host`` must name the bound address (403: DNS
rebinding); the token (401); the method (405, with ``Allow``); for a POST,
``Origin`` (if sent, or always with the cookie) must be this server's own
(403: cross-site posts) and the body JSON.  Answers are JSON with
``Cache-Control: no-store``; errors are ``{"error": "..."}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from fetchq.admin import metrics
from fetchq.admin.controls import KEEP, AdminError, Controls, check_page
from fetchq.admin.page import render_page
from fetchq.admin.security import (
    LoginCodes,
    Origins,
    is_loopback,
    make_token,
    masked,
    same_token,
    write_token_file,
)
from fetchq.recipe.units import parse_duration, parse_rate

__all__ = ["API", "AdminServer"]

API = "/api/v1"
"""Where the JSON API lives (its version in the path)."""

log = Logger(namespace="fetchq.admin")

_MAX_BODY = 64 * 1024
Request = Any  # twisted.web.server.Request (untyped)
Handler = Callable[..., Any]


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")


class AdminServer:
    """Serves one :class:`~fetchq.admin.controls.Controls` over HTTP.

    Args:
        controls: what the API reads and steers.
        reactor: listens and keeps time.
        host: the address to listen on (default loopback only).
        port: the port (0: any free one).
        token: the bearer token (default: ``$FETCHQ_ADMIN_TOKEN``, else a
            random one).
        token_file: write ``{"url", "token"}`` here, mode 0600.
        metrics_open: serve ``/metrics`` without the token.
        kind: the ``kind`` label of the metrics.
        hosts: more names the server may be reached by (``Host``/``Origin``).
    """

    def __init__(
        self,
        controls: Controls,
        reactor: Any,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        token_file: Path | None = None,
        metrics_open: bool = False,
        kind: str = "queue",
        hosts: tuple[str, ...] = (),
    ) -> None:
        self.controls = controls
        self.reactor = reactor
        self.host = host
        self.port = port
        self.token = make_token() if token is None else token
        self.token_file = token_file
        self.metrics_open = metrics_open
        self.registry = metrics.registry_for(controls, kind)
        self.codes = LoginCodes(reactor)
        self._hosts = hosts
        self.origins: Origins | None = None
        self._listening: Any = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` once listening."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        if self.host in ("0.0.0.0", "::"):
            shown = "127.0.0.1"
        return f"http://{shown}:{self.port}"

    def start(self) -> AdminServer:
        """Listen, write the token file, start sampling.

        Raises:
            twisted.internet.error.CannotListenError: the port is taken.
        """
        site = Site(AdminResource(self))  # type: ignore[no-untyped-call]
        site.displayTracebacks = False
        site.noisy = False
        self._listening = self.reactor.listenTCP(self.port, site, interface=self.host)
        self.port = self._listening.getHost().port
        self.origins = Origins(self.host, self.port)
        for name in self._hosts:
            self.origins.allow_host(name)
        if self.host in ("0.0.0.0", "::"):
            self.origins.allow_host("127.0.0.1")
            self.origins.allow_host("localhost")
        if self.token_file is not None:
            write_token_file(self.token_file, self.token, self.url)
        self.controls.start()
        where = "" if self.token_file is None else f" (full token in {self.token_file})"
        log.info(
            "admin on {url}, token {token}{where}",
            event="admin.started",
            url=self.url,
            token=masked(self.token),
            where=where,
        )
        if not is_loopback(self.host):
            log.warn(
                "the admin server listens on {host}, not loopback: anyone who can"
                " reach it and has the token can steer this run",
                event="admin.exposed",
                host=self.host,
            )
        return self

    def login_link(self) -> str:
        """A one-time link that opens the page (good once, for 10 minutes)."""
        return f"{self.url}/login?code={quote(self.codes.new())}"

    def stop(self) -> defer.Deferred[None]:
        """Stop listening and sampling; the token file is removed."""
        self.controls.close()
        if self.token_file is not None:
            self.token_file.unlink(missing_ok=True)
        if self._listening is None:
            return defer.succeed(None)
        listening, self._listening = self._listening, None
        return defer.maybeDeferred(listening.stopListening)

    @property
    def cookie_name(self) -> bytes:
        """The page's cookie (per port: cookies do not keep ports apart)."""
        return f"fetchq_admin_{self.port}".encode("ascii")


class AdminResource(Resource):
    """Every route of the admin server (see the module docstring)."""

    isLeaf = True

    def __init__(self, server: AdminServer) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.admin = server
        self.controls = server.controls
        gets: list[tuple[str, Handler]] = [
            ("status", self.get_status),
            ("lanes", self.get_lanes),
            ("jobs", self.get_jobs),
            ("timeline", self.get_timeline),
        ]
        posts: list[tuple[str, Handler]] = [
            ("width", self.post_width),
            ("rate", self.post_rate),
            ("lanes/(?P<key>[^/]+)", self.post_lane),
            ("pause", self.post_pause),
            ("resume", self.post_resume),
            ("stop", self.post_stop),
            ("jobs/(?P<id>[^/]+)/cancel", self.post_cancel),
            ("jobs/(?P<id>[^/]+)/priority", self.post_priority),
            ("controller", self.post_controller),
            ("login-link", self.post_login_link),
        ]
        self.routes: list[tuple[re.Pattern[str], bytes, Handler]] = [
            (re.compile(f"{API}/{path}$"), b"GET", handler) for path, handler in gets
        ] + [(re.compile(f"{API}/{path}$"), b"POST", h) for path, h in posts]

    # -- the checks ------------------------------------------------------------

    def _authorised(self, request: Request) -> tuple[bool, bool]:
        """(has the token, came by the cookie)."""
        token = self.admin.token
        header = request.getHeader(b"authorization")
        if header is not None:
            scheme, _, given = header.decode("latin-1").partition(" ")
            return scheme.lower() == "bearer" and same_token(
                given.strip(), token
            ), False
        cookie = request.getCookie(self.admin.cookie_name)
        if cookie is not None:
            return same_token(cookie, token), True
        return False, False

    def render(self, request: Request) -> Any:
        """Check the request, then route it."""
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-frame-options", b"DENY")
        request.setHeader(b"referrer-policy", b"no-referrer")
        origins = self.admin.origins
        assert origins is not None
        if not origins.host_ok(request.getHeader(b"host")):
            return self._error(
                request, 403, "the Host header does not name this server"
            )
        path = request.path.decode("latin-1")
        if path == "/login":
            return self.login(request)
        authorised, by_cookie = self._authorised(request)
        if path == "/metrics" and (authorised or self.admin.metrics_open):
            if request.method not in (b"GET", b"HEAD"):
                return self._not_allowed(request, b"GET")
            request.setHeader(b"content-type", metrics.CONTENT_TYPE.encode())
            return metrics.render(self.admin.registry)
        if not authorised:
            request.setHeader(b"www-authenticate", b'Bearer realm="fetchq"')
            if path == "/" and request.method == b"GET":
                request.setResponseCode(401)
                request.setHeader(b"content-type", b"text/html; charset=utf-8")
                return _LOGIN_NEEDED
            return self._error(request, 401, "the admin token is needed")
        if path == "/":
            if request.method != b"GET":
                return self._not_allowed(request, b"GET")
            return self.page(request)
        for pattern, method, handler in self.routes:
            match = pattern.match(path)
            if match is None:
                continue
            if request.method != method:
                return self._not_allowed(request, method)
            if method == b"POST":
                origin = request.getHeader(b"origin")
                if (origin is not None or by_cookie) and not origins.origin_ok(origin):
                    return self._error(request, 403, "cross-site request refused")
                try:
                    body = self._body(request)
                except AdminError as e:
                    return self._error(request, e.status, str(e))
                args = {k: unquote(v) for k, v in match.groupdict().items()}
                return self._answer(request, self._mutate, handler, body, args)
            return self._answer(request, handler, request)
        return self._error(request, 404, f"no such route: {path}")

    def _body(self, request: Request) -> dict[str, Any]:
        raw = request.content.read(_MAX_BODY + 1) if request.content else b""
        if len(raw) > _MAX_BODY:
            raise AdminError("the body is too large", 413)
        if not raw.strip():
            return {}
        kind = (request.getHeader(b"content-type") or b"").decode("latin-1")
        kind = kind.split(";")[0].strip().lower()
        if kind != "application/json":
            raise AdminError("send the body as application/json", 415)
        try:
            body = json.loads(raw)
        except ValueError:
            raise AdminError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise AdminError("the body must be a JSON object")
        return body

    def _mutate(
        self, handler: Handler, body: dict[str, Any], args: dict[str, str]
    ) -> Any:
        controls = self.controls
        controls.cause = "admin"
        try:
            return handler(body, **args)
        finally:
            controls.cause = None

    # -- answering -------------------------------------------------------------

    def _answer(self, request: Request, call: Handler, *args: Any) -> Any:
        request.setHeader(b"content-type", b"application/json")
        try:
            result = call(*args)
        except AdminError as e:
            return self._error(request, e.status, str(e))
        except Exception:
            log.failure("admin request {path} failed", path=request.path)
            return self._error(request, 500, "internal error (see the run's log)")
        if not isinstance(result, defer.Deferred):
            return _json_bytes(result)
        result.addCallbacks(
            lambda data: self._finish(request, 200, data),
            lambda f: self._failed(request, f),
        )
        return NOT_DONE_YET

    def _failed(self, request: Request, failure: Failure) -> None:
        if isinstance(failure.value, AdminError):
            status = failure.value.status
            self._finish(request, status, {"error": str(failure.value)})
            return
        log.failure("admin request {path} failed", failure, path=request.path)
        self._finish(request, 500, {"error": "internal error (see the run's log)"})

    def _finish(self, request: Request, status: int, data: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.setResponseCode(status)
        request.write(_json_bytes(data))
        request.finish()

    def _error(self, request: Request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return _json_bytes({"error": message})

    def _not_allowed(self, request: Request, method: bytes) -> bytes:
        request.setHeader(b"allow", method)
        return self._error(request, 405, f"use {method.decode()} here")

    # -- pages -------------------------------------------------------------

    def login(self, request: Request) -> bytes:
        """The one-time link: a good code sets the cookie and goes to /."""
        if request.method != b"GET":
            return self._not_allowed(request, b"GET")
        codes = request.args.get(b"code") or [b""]
        if not self.admin.codes.use(codes[0].decode("utf-8", "replace")):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/html; charset=utf-8")
            return _LINK_SPENT
        request.addCookie(
            self.admin.cookie_name,
            self.admin.token.encode("utf-8"),
            path=b"/",
            httpOnly=True,
            sameSite="strict",
        )
        request.setResponseCode(303)
        request.setHeader(b"location", b"/")
        return b""

    def page(self, request: Request) -> bytes:
        """The live page."""
        html, nonce = render_page(self.controls.name, self.controls.engine)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(
            b"content-security-policy",
            (
                f"default-src 'none'; script-src 'nonce-{nonce}'; "
                "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; "
                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            ).encode("ascii"),
        )
        return html.encode("utf-8")

    # -- reading -------------------------------------------------------------

    def get_status(self, request: Request) -> Any:
        return self.controls.status()

    def get_lanes(self, request: Request) -> Any:
        sort = _arg(request, "sort") or "backlog"
        limit = check_page(_int_arg(request, "limit"))
        cursor = _int_arg(request, "cursor") or 0
        if cursor < 0:
            raise AdminError("cursor must be >= 0")
        return self.controls.lanes(limit, cursor, sort)

    def get_jobs(self, request: Request) -> Any:
        state = _arg(request, "state") or "pending"
        limit = check_page(_int_arg(request, "limit"))
        return self.controls.jobs(
            state, _arg(request, "lane"), limit, _arg(request, "cursor")
        )

    def get_timeline(self, request: Request) -> Any:
        timeline = self.controls.timeline
        return {} if timeline is None else timeline.to_json()

    # -- changing ------------------------------------------------------------

    def post_width(self, body: dict[str, Any]) -> Any:
        width = _need(body, "width")
        if isinstance(width, bool) or not isinstance(width, int) or width < 0:
            raise AdminError(f"width must be an integer >= 0, not {width!r}")
        return self.controls.set_width(width)

    def post_rate(self, body: dict[str, Any]) -> Any:
        rate = _rate(_need(body, "rate"))
        burst = body.get("burst")
        if burst is not None and (
            isinstance(burst, bool) or not isinstance(burst, int) or burst < 1
        ):
            raise AdminError(f"burst must be an integer >= 1, not {burst!r}")
        return self.controls.set_rate(rate, burst)

    def post_lane(self, body: dict[str, Any], key: str) -> Any:
        width = body.get("width", KEEP)
        if width not in (KEEP, None, "default") and (
            isinstance(width, bool) or not isinstance(width, int) or width < 0
        ):
            raise AdminError(
                f"width must be an integer >= 0, null or default, not {width!r}"
            )
        rate = body.get("rate", KEEP)
        if rate not in (KEEP, None, "default"):
            rate = _rate(rate)
        hold = body.get("hold")
        if hold is not None:
            hold = _duration(hold)
        release = body.get("release", False)
        if not isinstance(release, bool):
            raise AdminError("release must be true or false")
        if width is KEEP and rate is KEEP and hold is None and not release:
            raise AdminError("give width, rate, hold or release")
        return self.controls.set_lane(key, width, rate, hold, release)

    def post_pause(self, body: dict[str, Any]) -> Any:
        return self.controls.pause()

    def post_resume(self, body: dict[str, Any]) -> Any:
        return self.controls.resume()

    def post_stop(self, body: dict[str, Any]) -> Any:
        return self.controls.stop()

    def post_cancel(self, body: dict[str, Any], id: str) -> Any:
        return self.controls.cancel(id)

    def post_priority(self, body: dict[str, Any], id: str) -> Any:
        priority = _need(body, "priority")
        if isinstance(priority, bool) or not isinstance(priority, (int, float)):
            raise AdminError(f"priority must be a number, not {priority!r}")
        return self.controls.reprioritize(id, priority)

    def post_controller(self, body: dict[str, Any]) -> Any:
        attach = body.get("attach")
        if attach is not None and not isinstance(attach, bool):
            raise AdminError("attach must be true or false")
        bounds = []
        for name in ("min_width", "max_width"):
            value = body.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int)
            ):
                raise AdminError(f"{name} must be an integer, not {value!r}")
            bounds.append(value)
        return self.controls.controller(attach, bounds[0], bounds[1])

    def post_login_link(self, body: dict[str, Any]) -> Any:
        return {"url": self.admin.login_link()}


def _arg(request: Request, name: str) -> str | None:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return None
    return str(values[0].decode("utf-8", "replace"))


def _int_arg(request: Request, name: str) -> int | None:
    text = _arg(request, name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise AdminError(f"{name} must be an integer, not {text!r}") from None


def _need(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise AdminError(f"give {name!r} in the JSON body")
    return body[name]


def _rate(value: Any) -> float | None:
    """A rate from JSON: a number per second, ``"50/s"``, ``"3000/min"``, or
    null / ``"none"`` for unlimited."""
    if value is None or value in ("none", "unlimited", ""):
        return None
    if isinstance(value, bool):
        raise AdminError(f"bad rate {value!r}")
    try:
        rate = parse_rate(value)
    except (TypeError, ValueError) as e:
        raise AdminError(f"bad rate {value!r}: {e}") from None
    if not rate > 0:
        raise AdminError(f"the rate must be above 0, not {value!r}")
    return rate


def _duration(value: Any) -> float:
    if isinstance(value, bool):
        raise AdminError(f"bad duration {value!r}")
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as e:
        raise AdminError(f"bad duration {value!r}: {e}") from None
    if not 0 < seconds <= 7 * 86400:
        raise AdminError(
            f"a hold lasts more than 0 s and at most 7 days, not {value!r}"
        )
    return seconds


_LOGIN_NEEDED = b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>fetchq admin</title></head><body style="font-family:system-ui;margin:3em">
<h1>fetchq admin</h1><p>This page needs a one-time link.  Get one with</p>
<pre>fetchq ctl RECIPE page</pre><p>(or <code>fetchq ctl URL page</code> with the
token in <code>$FETCHQ_ADMIN_TOKEN</code>), then open it here.</p></body></html>
"""

_LINK_SPENT = b"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>fetchq admin</title></head><body style="font-family:system-ui;margin:3em">
<h1>fetchq admin</h1><p>That link has been used or is too old.  Get a new one
with <code>fetchq ctl RECIPE page</code>.</p></body></html>
"""
