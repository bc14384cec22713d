"""The admin server over real loopback sockets: the API steers a running
queue, and its locks hold (token, Host/Origin, methods, the token file)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import treq
from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SynchronousTestCase, TestCase

from fetchq import ResizableDispatchQueue
from fetchq.admin import AdminServer, QueueControls, serve_admin
from fetchq.admin.security import (
    LoginCodes,
    Origins,
    make_token,
    masked,
    parse_listen,
    same_token,
)
from fetchq.admin.watch import BoundedLanes

TOKEN = "t0ken-for-the-tests-0123456789"

GET_ROUTES = ["status", "lanes", "jobs", "timeline"]
POST_ROUTES = [
    ("width", {"width": 3}),
    ("rate", {"rate": "10/s"}),
    ("lanes/a", {"hold": "5s"}),
    ("pause", {}),
    ("resume", {}),
    ("jobs/x/cancel", {}),
    ("jobs/x/priority", {"priority": 1}),
    ("controller", {"attach": False}),
    ("login-link", {}),
    ("stop", {}),
]


def sleeper(seconds: float) -> Any:
    """A job function: each job takes ``seconds`` of real time."""

    def work(arg: Any) -> defer.Deferred[Any]:
        return task.deferLater(reactor, seconds, lambda: arg)

    return work


class AdminCase(TestCase):
    """A queue of slow jobs with an admin server on a free loopback port."""

    def setUp(self) -> None:
        self.queue = ResizableDispatchQueue(sleeper(0.05), 2, clock=reactor)
        self.jobs = [
            self.queue.put(n, key=f"host{n % 3}", job_id=f"j{n}") for n in range(200)
        ]
        self.failed: dict[str, str] = {}
        for d in self.jobs:
            d.addErrback(self._failed)
        self.tmp = Path(self.mktemp())
        self.tmp.mkdir()
        self.server = serve_admin(
            self.queue,
            reactor=reactor,
            token=TOKEN,
            token_file=self.tmp / "state.admin",
            name="tests",
        )
        self.base = self.server.url
        self.addCleanup(self._stop)

    def _failed(self, failure: Any) -> None:
        job = failure.value.job
        self.failed[job.id] = type(failure.value).__name__

    @defer.inlineCallbacks
    def _stop(self) -> Any:
        yield self.server.stop()
        yield self.queue.stop(cancel_underway=True)

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = TOKEN,
        headers: dict[str, str] | None = None,
    ) -> defer.Deferred[tuple[int, Any]]:
        hdrs = {"Host": f"127.0.0.1:{self.server.port}"}
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        if body is not None:
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        data = None if body is None else json.dumps(body).encode()
        d = treq.request(
            method,
            self.base + path,
            data=data,
            headers={k: [v] for k, v in hdrs.items()},
            persistent=False,
        )

        def read(response: Any) -> Any:
            def parse(raw: bytes) -> tuple[int, Any]:
                kind = response.headers.getRawHeaders(b"content-type", [b""])[0]
                if kind.startswith(b"application/json"):
                    return response.code, json.loads(raw)
                return response.code, raw.decode("utf-8", "replace")

            return treq.content(response).addCallback(parse)

        return d.addCallback(read)


class ApiTests(AdminCase):
    @defer.inlineCallbacks
    def test_status_reports_the_running_queue(self) -> Any:
        """status says the queue's width, state, in-flight count and counts."""
        code, status = yield self.call("GET", "/api/v1/status")
        self.assertEqual(code, 200)
        self.assertEqual(status["width"], 2)
        self.assertEqual(status["state"], "running")
        self.assertEqual(status["engine"], "local")
        self.assertEqual(status["name"], "tests")
        self.assertEqual(status["in_flight"], 2)
        self.assertEqual(status["in_flight"] + status["pending"] + status["done"], 200)

    @defer.inlineCallbacks
    def test_width_change_takes_effect_at_once(self) -> Any:
        """POST width changes the running queue's width before the answer
        comes back, and more jobs are underway right away."""
        code, answer = yield self.call("POST", "/api/v1/width", {"width": 7})
        self.assertEqual((code, answer["width"], answer["was"]), (200, 7, 2))
        self.assertEqual(self.queue.width, 7)
        self.assertEqual(self.queue.size()[0], 7)

    @defer.inlineCallbacks
    def test_rate_pause_resume(self) -> Any:
        """rate accepts "N/s" and null; pause stops launching; resume goes on."""
        code, answer = yield self.call("POST", "/api/v1/rate", {"rate": "600/min"})
        self.assertEqual((code, answer["rate"]), (200, 10.0))
        self.assertEqual(self.queue.rate, 10.0)
        yield self.call("POST", "/api/v1/rate", {"rate": None})
        self.assertIsNone(self.queue.rate)
        code, answer = yield self.call("POST", "/api/v1/pause", {})
        self.assertEqual(answer["state"], "paused")
        self.assertTrue(self.queue.paused)
        code, status = yield self.call("GET", "/api/v1/status")
        self.assertEqual(status["state"], "paused")
        yield self.call("POST", "/api/v1/resume", {})
        self.assertFalse(self.queue.paused)

    @defer.inlineCallbacks
    def test_lane_hold_release_and_listing(self) -> Any:
        """A lane held through the API launches nothing until released;
        lanes lists it with its hold, busiest first."""
        code, answer = yield self.call("POST", "/api/v1/lanes/host1", {"hold": "60s"})
        self.assertEqual(code, 200)
        self.assertGreater(self.queue.lane("host1").held_until, reactor.seconds() + 50)
        code, page = yield self.call("GET", "/api/v1/lanes?sort=backlog&limit=2")
        self.assertEqual(code, 200)
        self.assertEqual(len(page["lanes"]), 2)
        self.assertEqual(page["total"], 3)
        self.assertEqual(page["next"], 2)
        code, status = yield self.call("GET", "/api/v1/status")
        self.assertIn("host1", [h["lane"] for h in status["holds"]])
        code, answer = yield self.call("POST", "/api/v1/lanes/host1", {"release": True})
        self.assertTrue(answer["released"])
        self.assertIsNone(self.queue.lane("host1").held_until)

    @defer.inlineCallbacks
    def test_lane_width_and_rate(self) -> Any:
        """A lane's own width and rate are set, and reset with "default"."""
        yield self.call("POST", "/api/v1/lanes/host2", {"width": 1, "rate": "2/s"})
        info = self.queue.lane("host2")
        self.assertEqual((info.width, info.rate), (1, 2.0))
        yield self.call("POST", "/api/v1/lanes/host2", {"width": "default"})
        self.assertIsNone(self.queue.lane("host2").width)

    @defer.inlineCallbacks
    def test_jobs_are_paged(self) -> Any:
        """pending jobs come in pages in dispatch order, each page starting
        after the cursor of the one before; never more than asked."""
        code, first = yield self.call("GET", "/api/v1/jobs?state=pending&limit=5")
        self.assertEqual(code, 200)
        self.assertEqual(len(first["jobs"]), 5)
        code, second = yield self.call(
            "GET", f"/api/v1/jobs?state=pending&limit=5&cursor={first['next']}"
        )
        ids = [j["id"] for j in first["jobs"] + second["jobs"]]
        self.assertEqual(len(set(ids)), 10)
        numbers = [int(i[1:]) for i in ids]
        self.assertEqual(numbers, sorted(numbers))
        code, lane = yield self.call(
            "GET", "/api/v1/jobs?state=pending&lane=host0&limit=3"
        )
        self.assertEqual({j["lane"] for j in lane["jobs"]}, {"host0"})
        code, underway = yield self.call("GET", "/api/v1/jobs?state=underway")
        self.assertEqual(len(underway["jobs"]), 2)
        code, big = yield self.call("GET", "/api/v1/jobs?limit=100000")
        self.assertLessEqual(len(big["jobs"]), 500)

    @defer.inlineCallbacks
    def test_cancel_and_reprioritize(self) -> Any:
        """A pending job is cancelled by id (its Deferred fails with
        JobCancelled); another one moves to the front with a new priority;
        an unknown id is 404.  (The queue is paused first: the job moved to
        the front would otherwise be the next to launch, and leave the
        pending list as soon as a job ends.)"""
        yield self.call("POST", "/api/v1/pause", {})
        code, answer = yield self.call("POST", "/api/v1/jobs/j150/cancel", {})
        self.assertEqual((code, answer["cancelled"]), (200, True))
        self.assertEqual(self.failed, {"j150": "JobCancelled"})
        code, _ = yield self.call(
            "POST", "/api/v1/jobs/j199/priority", {"priority": -5}
        )
        self.assertEqual(code, 200)
        code, page = yield self.call("GET", "/api/v1/jobs?state=pending&limit=1")
        self.assertEqual(page["jobs"][0]["id"], "j199")
        code, answer = yield self.call("POST", "/api/v1/jobs/nope/cancel", {})
        self.assertEqual(code, 404)

    @defer.inlineCallbacks
    def test_controller_attach_detach(self) -> Any:
        """The adaptive controller is attached with a range, then detached."""
        body = {"attach": True, "min_width": 2, "max_width": 9}
        code, answer = yield self.call("POST", "/api/v1/controller", body)
        self.assertEqual(code, 200)
        self.assertTrue(answer["attached"])
        self.assertEqual((answer["min_width"], answer["max_width"]), (2, 9))
        code, answer = yield self.call("POST", "/api/v1/controller", {"attach": False})
        self.assertFalse(answer["attached"])

    @defer.inlineCallbacks
    def test_bad_values_are_400(self) -> Any:
        """A bad value is a 400 with a message, and changes nothing."""
        for path, body in [
            ("width", {"width": -1}),
            ("width", {"width": "many"}),
            ("width", {}),
            ("rate", {"rate": "fast"}),
            ("lanes/a", {}),
            ("lanes/a", {"hold": "forever"}),
        ]:
            code, answer = yield self.call("POST", f"/api/v1/{path}", body)
            self.assertEqual(code, 400, (path, body))
            self.assertIn("error", answer)
        self.assertEqual(self.queue.width, 2)

    @defer.inlineCallbacks
    def test_stop_stops_the_queue(self) -> Any:
        """POST stop stops the queue cleanly."""
        code, answer = yield self.call("POST", "/api/v1/stop", {})
        self.assertEqual((code, answer["state"]), (200, "stopping"))
        self.assertTrue(self.queue.stopped)

    @defer.inlineCallbacks
    def test_metrics(self) -> Any:
        """/metrics is Prometheus text with the queue's numbers."""
        yield task.deferLater(reactor, 0.3, lambda: None)
        code, text = yield self.call("GET", "/metrics")
        self.assertEqual(code, 200)
        self.assertIn("fetchq_width 2.0", text)
        self.assertIn('fetchq_jobs_total{kind="queue",outcome="ok"}', text)
        self.assertIn("fetchq_job_latency_seconds_bucket", text)
        self.assertIn("fetchq_in_flight 2.0", text)


class SecurityTests(AdminCase):
    @defer.inlineCallbacks
    def test_no_token_is_401_everywhere(self) -> Any:
        """Every route without the token (or with a wrong one) is 401, and
        nothing changes."""
        paths = [("GET", f"/api/v1/{p}", None) for p in GET_ROUTES]
        paths += [("POST", f"/api/v1/{p}", b) for p, b in POST_ROUTES]
        paths += [("GET", "/", None), ("GET", "/metrics", None), ("GET", "/nope", None)]
        for token in (None, "wrong-token-wrong-token"):
            for method, path, body in paths:
                code, _ = yield self.call(method, path, body, token=token)
                self.assertEqual(code, 401, (method, path, token))
        self.assertEqual(self.queue.width, 2)
        self.assertFalse(self.queue.stopped)

    @defer.inlineCallbacks
    def test_foreign_origin_is_403(self) -> Any:
        """A POST whose Origin is another site is refused, token or not."""
        for path, body in POST_ROUTES:
            code, _ = yield self.call(
                "POST",
                f"/api/v1/{path}",
                body,
                headers={"Origin": "http://evil.example"},
            )
            self.assertEqual(code, 403, path)
        self.assertEqual(self.queue.width, 2)
        self.assertFalse(self.queue.stopped)

    @defer.inlineCallbacks
    def test_foreign_host_is_403(self) -> Any:
        """A request whose Host is another name (DNS rebinding) is refused."""
        code, _ = yield self.call(
            "GET",
            "/api/v1/status",
            headers={"Host": f"evil.example:{self.server.port}"},
        )
        self.assertEqual(code, 403)

    @defer.inlineCallbacks
    def test_get_that_mutates_is_405(self) -> Any:
        """A GET on a route that changes things is 405 (and changes nothing);
        a POST on a reading route too."""
        for path, _ in POST_ROUTES:
            code, _ = yield self.call("GET", f"/api/v1/{path}?width=9")
            self.assertEqual(code, 405, path)
        for path in GET_ROUTES:
            code, _ = yield self.call("POST", f"/api/v1/{path}", {})
            self.assertEqual(code, 405, path)
        self.assertEqual(self.queue.width, 2)
        self.assertFalse(self.queue.paused)

    @defer.inlineCallbacks
    def test_form_post_is_refused(self) -> Any:
        """A body that is not JSON (what a cross-site form sends) is 415."""
        code, _ = yield self.call(
            "POST",
            "/api/v1/width",
            None,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertIn(code, (400, 415))

    def test_token_file_is_0600(self) -> None:
        """The token file is readable by its owner only, and holds the URL
        and the token."""
        path = self.tmp / "state.admin"
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        data = json.loads(path.read_text())
        self.assertEqual(data, {"url": self.base, "token": TOKEN})

    @defer.inlineCallbacks
    def test_login_link_sets_a_strict_httponly_cookie_once(self) -> Any:
        """The one-time link sets a SameSite=Strict, HttpOnly cookie and
        redirects to the page; the same link a second time is refused; the
        cookie opens the page, and a cookie POST without Origin is 403."""
        link = self.server.login_link()
        response = yield treq.get(link, allow_redirects=False, persistent=False)
        yield treq.content(response)
        self.assertEqual(response.code, 303)
        cookie = response.headers.getRawHeaders(b"set-cookie")[0].decode()
        self.assertIn("HttpOnly", cookie)
        self.assertIn("SameSite=strict", cookie.replace("Strict", "strict"))
        again = yield treq.get(link, allow_redirects=False, persistent=False)
        yield treq.content(again)
        self.assertEqual(again.code, 403)
        value = cookie.split(";")[0]
        code, page = yield self.call("GET", "/", token=None, headers={"Cookie": value})
        self.assertEqual(code, 200)
        self.assertIn("FetchqCharts", page)
        code, _ = yield self.call(
            "POST", "/api/v1/width", {"width": 5}, token=None, headers={"Cookie": value}
        )
        self.assertEqual(code, 403)
        origin = {"Cookie": value, "Origin": self.base}
        code, _ = yield self.call("POST", "/api/v1/width", {"width": 5}, None, origin)
        self.assertEqual(code, 200)
        self.assertEqual(self.queue.width, 5)


class PieceTests(SynchronousTestCase):
    def test_parse_listen(self) -> None:
        """[HOST:]PORT: loopback by default, IPv6 in brackets, bad ones named."""
        self.assertEqual(parse_listen("8765"), ("127.0.0.1", 8765))
        self.assertEqual(parse_listen("0.0.0.0:80"), ("0.0.0.0", 80))
        self.assertEqual(parse_listen("[::1]:9"), ("::1", 9))
        for bad in ("x", "1:2:x", "70000", ":80"):
            self.assertRaises(ValueError, parse_listen, bad)

    def test_tokens(self) -> None:
        """Tokens are random unless given; short given ones are refused;
        masking shows 4 characters; comparison needs the whole token."""
        self.assertNotEqual(make_token({}), make_token({}))
        self.assertEqual(make_token({"FETCHQ_ADMIN_TOKEN": TOKEN}), TOKEN)
        self.assertRaises(ValueError, make_token, {"FETCHQ_ADMIN_TOKEN": "short"})
        self.assertEqual(masked(TOKEN), "t0ke\u2026")
        self.assertTrue(same_token(TOKEN, TOKEN))
        self.assertFalse(same_token(TOKEN[:-1], TOKEN))
        self.assertFalse(same_token(None, TOKEN))

    def test_origins(self) -> None:
        """Loopback servers accept their loopback names and port only."""
        origins = Origins("127.0.0.1", 8000)
        self.assertTrue(origins.host_ok(b"localhost:8000"))
        self.assertFalse(origins.host_ok(b"localhost:8001"))
        self.assertFalse(origins.host_ok(b"evil.example:8000"))
        self.assertTrue(origins.origin_ok(b"http://127.0.0.1:8000"))
        self.assertFalse(origins.origin_ok(b"http://evil.example"))
        self.assertFalse(origins.origin_ok(None))

    def test_login_codes_expire_and_work_once(self) -> None:
        """A login code works once, and not after its time."""
        clock = task.Clock()
        codes = LoginCodes(clock, ttl=10)
        code = codes.new()
        self.assertTrue(codes.use(code))
        self.assertFalse(codes.use(code))
        late = codes.new()
        clock.advance(11)
        self.assertFalse(codes.use(late))

    def test_lane_labels_are_bounded_and_monotonic(self) -> None:
        """100,000 lanes export labels+1 series, and every series only grows
        as lanes get labels."""
        lanes = BoundedLanes(labels=5)
        for n in range(100_000):
            lanes.add(f"host{n}")
        for _ in range(50):
            lanes.add("busy")
        first = dict(lanes.series())
        self.assertEqual(len(first), 6)
        self.assertEqual(sum(first.values()), 100_050)
        lanes.add("busy")
        second = dict(lanes.series())
        for name, n in first.items():
            self.assertGreaterEqual(second[name], n)

    def test_server_refuses_a_taken_port(self) -> None:
        """A second server on a taken port fails at start, with the port."""
        queue = ResizableDispatchQueue(None, 0, clock=task.Clock())
        from twisted.internet.error import CannotListenError

        first = AdminServer(QueueControls(queue, timeline=False), reactor, token=TOKEN)
        first.start()
        self.addCleanup(first.stop)
        second = AdminServer(
            QueueControls(queue, timeline=False), reactor, port=first.port, token=TOKEN
        )
        self.assertRaises(CannotListenError, second.start)
