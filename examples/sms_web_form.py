"""The seed's scenario: a web form where people enter a phone number and a
message, and the message is queued to go out as an SMS.

Each message is checked first (the To must be E.164, the body not empty; a
bad one gets a clear answer and is not queued), then put on a
:class:`~fetchq.ResizableDispatchQueue` whose job function is an
:class:`~fetchq.sms.SmsSender`.  Each From number is a lane sending at most
``--rate`` messages a second (1 for a long code); ``--width`` caps the
requests in flight across the account.  fetchq's admin server
(:mod:`fetchq.admin`) watches and steers the queue while messages go out:
its live page, its JSON API and ``fetchq ctl`` change the width, every
sender's rate (``lanes/*``), hold a sender, cancel a message, and stop.

Stopping cleanly (the admin's stop, Ctrl-C or SIGTERM) waits for the
underway sends, then writes the messages not yet sent to ``--state`` (JSON,
one ``Message.to_json()`` each); the next start re-queues them before it
takes new ones.  The file is rewritten at every clean stop and left alone
otherwise, so after a crash the next start sends the last saved list again:
at least once, as :mod:`fetchq.sms` explains.  (A run that must not lose the
messages taken since the last stop wants a durable store, ``fetchq.store``.)

Run::

    python examples/sms_web_form.py                # http://127.0.0.1:8080/

Without ``--provider-url`` a fake provider (:mod:`fetchq.testing.sms`) runs
in-process on a free port and nothing leaves the machine.  With it, the
account comes from ``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` in the
environment (never the command line) and ``--from`` must be the account's
numbers.  ``/status.json`` has the counts, and what the fake accepted.  The
site listens on 127.0.0.1 only.  The admin server listens on 127.0.0.1 too
(``--admin-port``), with a token written to ``STATE.admin`` (mode 0600)::

    fetchq ctl http://127.0.0.1:PORT --token-file sms-pending.json.admin width 3
    fetchq ctl http://127.0.0.1:PORT --token-file sms-pending.json.admin page
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Site

from fetchq import Job, JobError, QueueStopped, ResizableDispatchQueue
from fetchq.admin import serve_admin
from fetchq.sms import (
    BadMessage,
    Message,
    SmsConfig,
    SmsError,
    SmsResult,
    SmsSender,
    check_message,
    check_sender,
    sms_retry_policy,
)
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeSMSProvider,
    serve_sms,
)

DEFAULT_SENDERS = ["+12125550100", "+12125550101"]
Request = Any  # a twisted.web.server.Request (its methods are not typed)

# ----------------------------------------------------------------------
# The saved messages


def load_state(path: Path, config: SmsConfig) -> list[Message]:
    """The messages saved at the last clean stop (none if no file).

    Raises:
        ValueError: naming the file and the entry that cannot be read.
    """
    if not path.exists():
        return []
    try:
        entries = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read saved messages ({e})") from None
    if not isinstance(entries, list):
        raise ValueError(f"{path}: expected a JSON list of messages")
    messages = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: message {n}: not a JSON object")
        try:
            messages.append(check_message(Message.from_json(entry), config))
        except BadMessage as e:
            raise ValueError(f"{path}: message {n}: {e}") from None
    return messages


def save_state(path: Path, messages: Sequence[Message]) -> None:
    """Write ``messages`` to ``path`` atomically (a crash leaves the old file)."""
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps([m.to_json() for m in messages], indent=1)
    tmp.write_text(text + "\n", "utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------
# The service: the queue and what happened to the messages


@attrs.define
class SmsService:
    """Queues checked messages; counts outcomes; stops and saves cleanly.

    Attributes:
        queue: the dispatch queue (job function: ``sender``).
        sender: the SMS sender.
        senders: the From numbers; each message goes to the one with the
            fewest messages waiting (each is a lane).
        state: the file of unsent messages.
        provider: the in-process fake provider, or None for a real one.
    """

    queue: ResizableDispatchQueue
    sender: SmsSender
    senders: list[str]
    state: Path
    provider: FakeSMSProvider | None = None
    counts: dict[str, int] = attrs.Factory(
        lambda: dict.fromkeys(["queued", "requeued", "sent", "failed", "rejected"], 0)
    )
    recent: deque[dict[str, Any]] = attrs.Factory(lambda: deque(maxlen=10))
    saved: int | None = None

    def submit(self, to: str, body: str) -> Message:
        """Check and queue a message from the form.

        Raises:
            BadMessage: the number or body is not acceptable; nothing queued.
            QueueStopped: the service is stopping.
        """
        try:
            message = check_message(Message(to, body), self.sender.config)
        except BadMessage:
            self.counts["rejected"] += 1
            raise
        sender, tag = self._least_busy_sender(), uuid.uuid4().hex[:12]
        message = attrs.evolve(message, from_=sender, id=tag)
        self._put(message)
        self.counts["queued"] += 1
        return message

    def requeue(self, messages: Sequence[Message]) -> None:
        """Queue messages saved by an earlier run."""
        for message in messages:
            self._put(message)
        self.counts["requeued"] += len(messages)

    def _least_busy_sender(self) -> str:
        busy = {lane.key: lane.pending + lane.underway for lane in self.queue.lanes()}
        return min(self.senders, key=lambda sender: busy.get(sender, 0))

    def _put(self, message: Message) -> None:
        d = self.queue.put(message, key=self.sender.lane_key(message))
        d.addCallbacks(self._sent, self._failed)

    def _sent(self, job: Job) -> None:
        result: SmsResult = job.result
        self.counts["sent"] += 1
        self.recent.appendleft({"outcome": "sent", **result.record()})

    def _failed(self, failure: Failure) -> Failure | None:
        error = failure.value
        if not isinstance(error, JobError):
            return failure  # not a job's outcome: let it be logged
        self.counts["failed"] += 1
        cause = error.job.failure.value if error.job.failure else error
        why = cause.record() if isinstance(cause, SmsError) else {"error": str(cause)}
        self.recent.appendleft({"outcome": "failed", "to": error.job.arg.to, **why})
        return None

    def shutdown(self) -> Deferred[int]:
        """Stop the queue, wait for underway sends, save the rest.

        Returns:
            A Deferred firing with how many messages were saved.  Calling it
            again gives the same count without saving again.
        """
        return self.queue.stop().addCallback(self._save)

    def _save(self, jobs: list[Job]) -> int:
        if self.saved is None:
            messages = [self._with_doubt(job.arg) for job in jobs]
            try:
                save_state(self.state, messages)
            except OSError as e:  # keep them somewhere a person can find them
                print(f"cannot save to {self.state} ({e}); unsent:", file=sys.stderr)
                print(json.dumps([m.to_json() for m in messages]), file=sys.stderr)
            else:
                say(f"stopped: {len(messages)} unsent messages saved to {self.state}")
            self.saved = len(messages)
            self.sender.close()
        return self.saved

    def _with_doubt(self, message: Message) -> Message:
        """The message, marked if an earlier attempt may have gone out."""
        since = self.sender.unsure(message)
        return message if since is None else attrs.evolve(message, unsure_since=since)

    def status(self) -> dict[str, Any]:
        """Everything ``/status.json`` shows."""
        underway, pending = self.queue.size()
        out: dict[str, Any] = {
            "width": self.queue.width,
            "rate": self.queue.lane_rate,
            "stopped": self.queue.stopped,
            "underway": underway,
            "pending": pending,
            **self.counts,
            "waiting": [job.arg.to_json() for job in self.queue.pending()[:50]],
            "recent": list(self.recent),
            "provider": None,
        }
        if self.provider is not None:
            out["provider"] = {
                "accepted": [
                    {"sid": m.sid, "to": m.to, "from": m.from_, "body": m.body}
                    for m in self.provider.messages
                ]
            }
        return out


# ----------------------------------------------------------------------
# The web pages

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:40em;margin:2em auto}}
.note{{padding:.5em;background:#eef}} .error{{background:#fdd}}
td,th{{padding:.2em .8em;text-align:left}}</style></head>
<body><h1>{title}</h1>{note}{body}</body></html>"""

FORM = """<form method="post" action="/send" accept-charset="utf-8">
<p><label>Your phone number (with its country code, e.g. +1 212 555 0199)<br>
<input name="to" size="24" required></label></p>
<p><label>Message<br><textarea name="body" rows="4" cols="50" maxlength="1600"
required></textarea></label></p><p><button>Send me an SMS</button></p>
</form>"""


def page(title: str, body: str, note: str = "", error: bool = False) -> bytes:
    """A whole HTML page; ``note`` (text, escaped here) is shown on top."""
    css = "note error" if error else "note"
    shown = f'<p class="{css}">{html.escape(note)}</p>' if note else ""
    return PAGE.format(title=title, note=shown, body=body).encode("utf-8")


def field(request: Request, name: str) -> str:
    """A form field's value as text ('' if absent)."""
    values: list[bytes] = (request.args or {}).get(name.encode("ascii")) or [b""]
    return values[0].decode("utf-8", "replace").strip()


class WebApp(Resource):
    """Every page of the site, routed by method and path."""

    isLeaf = True

    def __init__(self, service: SmsService):
        super().__init__()  # type: ignore[no-untyped-call]
        self.service = service
        self.routes: dict[tuple[bytes, bytes], Callable[[Request], bytes | int]] = {
            (b"GET", b"/"): self.form,
            (b"POST", b"/send"): self.send,
            (b"GET", b"/status.json"): self.status,
        }

    def render(self, request: Request) -> bytes | int:
        """Dispatch to the page for the request's method and path."""
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            request.setResponseCode(404)
            return page("Not found", '<p><a href="/">The form</a></p>')
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        return handler(request)

    def form(self, request: Request) -> bytes:
        return page("Send me an SMS", FORM)

    def send(self, request: Request) -> bytes:
        """Queue the form's message, or say why not."""
        try:
            message = self.service.submit(field(request, "to"), field(request, "body"))
        except BadMessage as e:
            request.setResponseCode(400)
            return page("Send me an SMS", FORM, f"Not sent: {e}", error=True)
        except QueueStopped:
            request.setResponseCode(503)
            return page("Send me an SMS", FORM, "Stopping: try later.", error=True)
        note = f"Queued: your message to {message.to} goes out from {message.from_}."
        return page("Send me an SMS", FORM, note)

    def status(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(self.service.status(), indent=1).encode("utf-8")


# ----------------------------------------------------------------------
# Putting it together


def say(text: str) -> None:
    """Print a line of the service's log, at once."""
    print(text, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    parser.add_argument(
        "--admin-port", type=int, default=0, help="the admin server's (0: any free)"
    )
    parser.add_argument("--provider-url", help="a Twilio-shaped API's base URL")
    parser.add_argument(
        "--state",
        type=Path,
        default=Path("sms-pending.json"),
        help="where unsent messages are saved at a stop and read at a start",
    )
    parser.add_argument("--width", type=int, default=5, help="requests in flight")
    parser.add_argument(
        "--rate", type=float, default=1.0, help="messages a second per sender"
    )
    parser.add_argument(
        "--from",
        dest="senders",
        action="append",
        metavar="NUMBER",
        help=f"a sender number, repeatable (default {' '.join(DEFAULT_SENDERS)})",
    )
    return parser.parse_args(argv)


def provider_config(
    reactor: Any, options: argparse.Namespace
) -> tuple[SmsConfig, FakeSMSProvider | None]:
    """The provider's configuration, starting a fake one if none was given."""
    sender = options.senders[0]
    if options.provider_url:
        config = SmsConfig.from_env(base_url=options.provider_url, from_number=sender)
        return config, None
    served = serve_sms(reactor, 0, latency=0.2)
    say(f"fake SMS provider on {served.url}")
    config = SmsConfig(
        DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, base_url=served.url, from_number=sender
    )
    return config, served.fake


def start(reactor: Any, options: argparse.Namespace) -> SmsService:
    """Re-queue the saved messages, then open the web site.

    Raises:
        ValueError: a bad option, credential or state file.
        CannotListenError: the port is taken.
    """
    options.senders = [check_sender(s) for s in options.senders or DEFAULT_SENDERS]
    config, provider = provider_config(reactor, options)
    sender = SmsSender(config, reactor, pool_size=max(options.width, 1))
    queue = ResizableDispatchQueue(
        sender,
        options.width,
        clock=reactor,
        lane_rate=options.rate,
        retry=sms_retry_policy(),
    )
    service = SmsService(queue, sender, options.senders, options.state, provider)
    saved = load_state(options.state, config)
    service.requeue(saved)
    say(f"re-queued {len(saved)} messages from {options.state}")

    def stop() -> None:
        # Save the unsent, then end the process (the answer goes out first).
        service.shutdown().addCallback(lambda _: reactor.callLater(0.2, reactor.stop))

    site = Site(WebApp(service))  # type: ignore[no-untyped-call]
    port = reactor.listenTCP(options.port, site, interface="127.0.0.1")
    say(f"web form on http://127.0.0.1:{port.getHost().port}/")
    admin = serve_admin(
        queue,
        reactor=reactor,
        port=options.admin_port,
        token_file=options.state.with_name(options.state.name + ".admin"),
        name="SMS queue",
        on_stop=stop,
    )
    say(f"admin on {admin.url} (token in {admin.token_file})")
    say(f"admin page (one-time link): {admin.login_link()}")
    reactor.addSystemEventTrigger("before", "shutdown", service.shutdown)
    return service


def main(argv: Sequence[str] | None = None) -> None:
    """Run until stopped (the admin button, Ctrl-C or SIGTERM)."""
    options = parse_args(argv)
    from twisted.internet import reactor as default_reactor

    reactor: Any = default_reactor
    try:
        start(reactor, options)
    except Exception as e:  # one line for the person, no traceback
        print(f"sms_web_form: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    reactor.run()


if __name__ == "__main__":
    main()
