"""The examples run to completion on the real reactor and say what they did."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    if proc.returncode != 0:
        raise AssertionError(f"{name} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


class ExampleTests(SynchronousTestCase):
    def test_queue_demo(self) -> None:
        """`make demo`'s script resizes, pauses, stops, saves and re-queues,
        and accounts for every one of its 300 jobs."""
        out = run_example("queue_demo.py")
        for expected in (
            "queued 300 messages at width 5",
            "width 5 -> 20",
            "width 20 -> 7",
            "pausing",
            "width 7 -> 8",
            "saved ",
            "re-queues the saved jobs",
        ):
            self.assertIn(expected, out)
        self.assertRegex(out, r"done: \d+ sent of 300 queued \(1 cancelled")

    def test_lanes_demo(self) -> None:
        """The lanes example finishes every request, is throttled exactly
        three times by busy.example, and ends with no lanes left."""
        out = run_example("lanes_demo.py")
        self.assertIn("fast.example  ok 12  throttled 0", out)
        self.assertIn("busy.example  ok 12  throttled 3", out)
        self.assertIn("lanes 0.2 s later: 0", out)

    def test_adaptive_demo(self) -> None:
        """The adaptive example's controller widens past 20 while the server
        takes 30 at once, is down to near 10 from 3 s after the capacity falls
        to 10 until it rises, is past 20 again 5 s after that, and detaches
        with every job done."""
        out = run_example("adaptive_demo.py")
        rows = [
            (int(m["time"]), int(m["capacity"]), int(m["width"]))
            for m in re.finditer(
                r"^ *(?P<time>\d+) s +(?P<capacity>\d+) +(?P<width>\d+) ",
                out,
                re.MULTILINE,
            )
        ]
        self.assertGreaterEqual(len(rows), 15)
        first = [w for t, c, w in rows if t <= 6 and c == 30]
        low = [w for t, c, w in rows if 9 <= t <= 11 and c == 10]
        later = [w for t, c, w in rows if t >= 17 and c == 30]
        self.assertGreater(max(first), 20)
        self.assertTrue(low and all(8 <= w <= 13 for w in low), low)
        self.assertTrue(later and all(w > 20 for w in later), later)
        self.assertRegex(out, r"all 15,000 jobs done at [\d.]+ s; detached")


class SmsWalkthroughTests(SynchronousTestCase):
    def test_sms_walkthrough(self) -> None:
        """The seed's walk-through against the fake provider: the two cancelled
        messages are never sent and every other one is accepted exactly once;
        the width changes take effect; nothing is accepted while paused; stop()
        gives back N jobs, which a new queue re-queues and sends; and no sender
        is ever sent faster than one message a second."""
        out = run_example("sms_walkthrough.py")
        self.assertIn("Cancel the second job (Hello #1; pending: True)", out)
        for change in ("5 -> 10", "10 -> 7", "7 -> 8", "8 -> 20"):
            self.assertIn(f"width {change}", out)
        self.assertIn("2 s paused: 0 more accepted", out)
        self.assertIn("put 80, sent 78, cancelled 2", out)
        self.assertIn("the provider accepted 78 messages", out)
        self.assertIn("accepted more than once: 0", out)
        self.assertIn("never accepted: Hello #1, Hello #79", out)
        self.assertIn("longest a message waited in the provider's own queue: 0.00", out)

        stop = re.search(r"stop\(\) gave back (\d+) unprocessed jobs", out)
        assert stop is not None, out
        unsent = int(stop[1])
        self.assertGreater(unsent, 0)
        self.assertIn(f"re-queued {unsent} jobs", out)
        self.assertIn(f"{unsent} re-queued jobs sent", out)
        accepted = [int(n) for n in re.findall(r"accepted (\d+)$", out, re.M)]
        after_stop = out[stop.end() :]
        at_stop = int(re.findall(r"accepted (\d+)$", after_stop, re.M)[0])
        self.assertEqual(at_stop + unsent, 78)
        self.assertEqual(accepted[-1], 78)

        senders = re.findall(
            r"^\+1212555010\d: (\d+) sent, min gap ([\d.]+) s, at ([\d ]+)$",
            out,
            re.M,
        )
        self.assertEqual(len(senders), 4, out)
        self.assertEqual(sum(int(n) for n, _, _ in senders), 78)
        for count, gap, times in senders:
            self.assertGreaterEqual(float(gap), 1.0)
            self.assertEqual(len(times.split()), int(count))


class SmsWebServiceTests(SynchronousTestCase):
    def test_three_workers_share_width_and_sender_pace(self) -> None:
        """The scaled-out web service (its own redis-server, the fake
        provider, 3 worker processes): 18 messages sent through all three
        workers are each accepted once, the provider never answers 20429
        nor has more than the shared width (3) in flight, a width set on
        one worker reaches all three, and on the Redis clock no
        sender is granted two messages within a second."""
        from tests.redis_server import need_redis

        need_redis()
        out = run_example("sms_web_service.py")
        self.assertIn("queued 18 messages through 3 workers", out)
        self.assertRegex(out, r"width 3 -> 2 through worker 3; reached all 3 workers")
        self.assertIn(
            "sent 18 of 18: the provider accepted 18, more than once 0, "
            "20429 answers 0",
            out,
        )
        most = re.search(r"most requests in flight at the provider: (\d+)", out)
        assert most is not None, out
        self.assertLessEqual(int(most[1]), 3)
        sent = re.search(r"each worker sent: (\d+), (\d+), (\d+)", out)
        assert sent is not None, out
        self.assertEqual(sum(int(n) for n in sent.groups()), 18)
        gaps = re.findall(
            r"^\+\d+: (\d+) sent, min gap ([\d.]+) s on the Redis", out, re.M
        )
        self.assertEqual(len(gaps), 3, out)
        self.assertEqual(sum(int(n) for n, _ in gaps), 18)
        for _, gap in gaps:
            self.assertGreaterEqual(float(gap), 0.999)


T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30) -> T:
    """Call ``probe`` until it returns something other than None (or False);
    fail naming ``what`` if ``timeout`` seconds pass first (a guard against
    a hang, generous so that a busy machine does not trip it)."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got is not None and got is not False:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class WebForm:
    """``examples/sms_web_form.py`` running as a subprocess on a free port."""

    def __init__(self, test: SynchronousTestCase, state: Path, *args: str) -> None:
        self.log = state.with_name(f"out-{time.monotonic_ns()}.txt")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
        )
        for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"):
            env.pop(name, None)
        command = [sys.executable, str(ROOT / "examples" / "sms_web_form.py")]
        command += ["--port", "0", "--state", str(state), *args]
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env
            )
        test.addCleanup(self.kill)
        found = wait_until("the web form to listen", self._url)
        self.url = found

    def _url(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"the web form exited:\n{self.output()}")
        found = re.search(r"web form on (http://127\.0\.0\.1:\d+)/", self.output())
        return None if found is None else found[1]

    def output(self) -> str:
        return self.log.read_text()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def post(self, path: str, **fields: str) -> tuple[int, str]:
        """POST a form; the status and the page."""
        data = urllib.parse.urlencode(fields).encode()
        try:
            with urllib.request.urlopen(self.url + path, data, timeout=10) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def admin(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """POST to the example's admin server (fetchq.admin), with the
        token from its file beside the state."""
        from fetchq.admin.ctl import request

        found = wait_until("the admin server", self._admin_url)
        return request(found, self.token, "POST", "/api/v1/" + path, body)

    def _admin_url(self) -> str | None:
        found = re.search(
            r"admin on (http://127\.0\.0\.1:\d+) \(token in (.*)\)", self.output()
        )
        if found is None:
            return None
        self.token = json.loads(Path(found[2]).read_text())["token"]
        return found[1]

    def status(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/status.json", timeout=10) as answer:
            doc: dict[str, Any] = json.load(answer)
            return doc

    def accepted(self) -> Counter[str]:
        """The bodies the fake provider accepted, with how many times."""
        return Counter(m["body"] for m in self.status()["provider"]["accepted"])

    def exit_code(self) -> int:
        return self.proc.wait(30)


class SmsWebFormTests(SynchronousTestCase):
    def test_queue_stop_save_and_requeue(self) -> None:
        """The web form refuses a number without a country code (saying so,
        queueing nothing), queues good ones in sender lanes, takes a new width
        from the admin server (fetchq.admin; and refuses a bad one), and on
        SIGTERM waits and saves the messages still waiting; restarted, it
        re-queues and sends them before anything else, sends new ones once
        the admin raises every sender's rate, and the admin's stop saves an
        empty list.  Every message is
        accepted by the provider exactly once."""
        folder = tempfile.mkdtemp(prefix="fq-sms-")
        self.addCleanup(shutil.rmtree, folder, True)
        state = Path(folder) / "pending.json"
        senders = ["--from", "+12125550100", "--from", "+12125550101"]
        slow = ["--rate", "0.02"]  # a second message per sender waits 50 s
        first = WebForm(self, state, "--width", "4", *slow, *senders)

        code, page = first.post("/send", to="212 555 0100", body="refused")
        self.assertEqual(code, 400)
        self.assertIn("Not sent: to: no country code", page)
        for n in range(1, 5):
            code, page = first.post("/send", to=f"+1 917 555 000{n}", body=f"hi {n}")
            self.assertEqual(code, 200)
            self.assertIn(f"Queued: your message to +1917555000{n}", page)
        self.assertEqual(first.admin("width", {"width": 3})[0], 200)
        code, answer = first.admin("width", {"width": -1})
        self.assertEqual(code, 400)
        self.assertIn("width must be", answer["error"])
        status = first.status()
        self.assertEqual(status["width"], 3)
        self.assertEqual((status["queued"], status["rejected"]), (4, 1))
        wait_until(
            "the first message of each sender",
            lambda: first.status()["sent"] == 2,
        )
        status = first.status()
        self.assertEqual(status["pending"], 2)
        self.assertEqual(first.accepted(), Counter({"hi 1": 1, "hi 2": 1}))

        first.proc.send_signal(signal.SIGTERM)
        self.assertEqual(first.exit_code(), 0)
        self.assertIn("stopped: 2 unsent messages saved to", first.output())
        saved = json.loads(state.read_text())
        self.assertEqual(
            sorted((m["to"], m["body"], m["from"]) for m in saved),
            [
                ("+19175550003", "hi 3", "+12125550100"),
                ("+19175550004", "hi 4", "+12125550101"),
            ],
        )

        second = WebForm(self, state, *slow, *senders)
        self.assertIn("re-queued 2 messages from", second.output())
        self.assertEqual(second.status()["requeued"], 2)
        wait_until("the re-queued messages", lambda: second.status()["sent"] == 2)
        self.assertEqual(second.accepted(), Counter({"hi 3": 1, "hi 4": 1}))
        for n in (5, 6):
            self.assertEqual(
                second.post("/send", to=f"+1917555000{n}", body=f"hi {n}")[0], 200
            )
        self.assertEqual(second.status()["pending"], 2)  # held by the rate
        code, answer = second.admin("lanes/*", {"rate": 5})
        self.assertEqual((code, answer["rate"]), (200, 5))
        wait_until("the rate to let them go", lambda: second.status()["sent"] == 4)
        self.assertEqual(
            second.accepted(), Counter({"hi 3": 1, "hi 4": 1, "hi 5": 1, "hi 6": 1})
        )

        code, answer = second.admin("stop", {})
        self.assertEqual((code, answer["state"]), (200, "stopping"))
        self.assertEqual(second.exit_code(), 0)
        self.assertIn("stopped: 0 unsent messages saved", second.output())
        self.assertEqual(json.loads(state.read_text()), [])
