"""The seed's walk-through, step by step, sending real (fake) SMS.

The job function is an :class:`~fetchq.sms.SmsSender` posting to a
:class:`~fetchq.testing.FakeSMSProvider`, in-process through
``treq.testing.StubTreq`` on a ``task.Clock``: the provider takes 2 s to
answer, each From number is a lane sending 1 message a second, and the
queue's width caps the requests in flight across the account (4 senders at
1/s with 2 s answers keep at most 8 in flight, whatever the width).  Half a
minute of simulated time passes in a fraction of a real second.

Run: ``python examples/sms_walkthrough.py``.
"""

from __future__ import annotations

import itertools
import pickle
from collections import Counter
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from fetchq import Job, JobCancelled, JobFinished, ResizableDispatchQueue, WidthChanged
from fetchq.sms import Message, SmsConfig, SmsSender, sms_retry_policy
from fetchq.testing import (
    DEFAULT_ACCOUNT_SID,
    DEFAULT_AUTH_TOKEN,
    FakeSMSProvider,
    advance_and_flush,
    run_until_idle,
)

SENDERS = ["+12125550100", "+12125550101", "+12125550102", "+12125550103"]
MESSAGES = 80  # 20 per sender

clock = Clock()
provider = FakeSMSProvider(clock, latency=2.0)
stub: Any = StubTreq(provider)  # type: ignore[no-untyped-call]
config = SmsConfig(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, base_url="http://sms.test")
send_sms = SmsSender(config, clock, http=stub)  # the seed's sendSMS
outcomes: Counter[str] = Counter()


def say(text: str) -> None:
    """Print ``text`` at the simulated time."""
    print(f"[{clock.seconds():4.1f}s] {text}")


def status(rdq: ResizableDispatchQueue) -> None:
    """Print the queue's counts and how many messages the provider accepted."""
    underway, pending = rdq.size()
    say(f"  underway {underway}, pending {pending}, accepted {len(provider.messages)}")


def wait_for(d: Deferred[Any]) -> Any:
    """Let simulated time pass until ``d`` fires; return its result."""
    while not d.called:
        advance_and_flush(clock, stub, 0.1)
    got: list[Any] = []
    d.addBoth(got.append)
    return got[0]


def observe(event: object) -> None:
    """A queue observer: print width changes, count how jobs end."""
    if isinstance(event, WidthChanged):
        say(f"  width {event.old} -> {event.new}")
    elif isinstance(event, JobFinished):
        outcomes[event.outcome.value] += 1


def new_queue(width: int) -> ResizableDispatchQueue:
    """A queue of SMS sends: one lane per From number, 1 launch a second."""
    rdq = ResizableDispatchQueue(
        send_sms, width, clock=clock, lane_rate=1.0, retry=sms_retry_policy()
    )
    rdq.subscribe(observe)
    return rdq


def ignore_cancelled(failure: Failure) -> None:
    """An errback: a cancelled job is expected here; anything else is not."""
    failure.trap(JobCancelled)  # type: ignore[no-untyped-call]


def main() -> None:
    """The seed's steps, in its order and words."""
    say("Create a queue that will allow 5 simultaneous underway jobs.")
    rdq = new_queue(5)
    say(f"Later... send off {MESSAGES} SMS messages from {len(SENDERS)} numbers.")
    messages = [
        Message(
            f"+1917555{i:04d}",
            f"Hello #{i}",
            from_=SENDERS[i * len(SENDERS) // MESSAGES],
        )
        for i in range(MESSAGES)
    ]
    ds = [rdq.put(m, priority=5, key=send_sms.lane_key(m)) for m in messages]
    for d in ds:
        d.addErrback(ignore_cancelled)
    pending = messages[1] in [job.arg for job in rdq.pending()]
    say(f"Cancel the second job ({messages[1].body}; pending: {pending}).")
    ds[1].cancel()
    advance_and_flush(clock, stub, 4)
    status(rdq)
    say("Widen the outgoing pipeline to 10 simultaneous jobs.")
    rdq.width = 10
    advance_and_flush(clock, stub, 4)
    status(rdq)
    say("We're dispatching jobs too fast, turn it down a little.")
    rdq.width = 7
    advance_and_flush(clock, stub, 4)
    status(rdq)

    jobs = rdq.pending()
    say(f"Get a copy of the list of pending jobs: {len(jobs)} of them.")
    say(f"Cancel one of the pending jobs from the jobs list ({jobs[-1].arg.body}).")
    jobs[-1].cancel()
    say(f"Reprioritize one of the pending jobs ({jobs[-2].arg.body}) to -1.")
    rdq.reprioritize(jobs[-2], -1)
    say(f"  first in dispatch order now: {rdq.pending()[0].arg.body}")
    say("Arrange to increase the number of jobs in 8 s (the seed: in one hour).")
    clock.callLater(8, rdq.setWidth, 20)

    say("Pause processing (fires once the underway jobs are done).")
    wait_for(rdq.pause())
    status(rdq)
    before = len(provider.messages)
    advance_and_flush(clock, stub, 2)
    say(f"  2 s paused: {len(provider.messages) - before} more accepted")
    say("Resume processing, with a new width of 8.")
    rdq.resume(8)
    advance_and_flush(clock, stub, 4)
    status(rdq)

    say("Shutdown. Wait for any underway jobs to complete, and save the rest.")
    saved = pickle.dumps(wait_for(rdq.stop()))
    unsent: list[Job] = pickle.loads(saved)
    say(f"  stop() gave back {len(unsent)} unprocessed jobs, pickled")
    status(rdq)
    say("Restart: a new queue re-queues the saved jobs.")
    again = new_queue(8)
    sent_before = outcomes["ok"]
    for job in unsent:
        again.requeue(job)
    say(f"  re-queued {len(unsent)} jobs")
    run_until_idle(clock, stub)
    say(f"  {outcomes['ok'] - sent_before} re-queued jobs sent")
    status(again)
    report(messages)


def report(messages: list[Message]) -> None:
    """What the provider accepted: counts and per-sender acceptance times."""
    print(f"\nput {MESSAGES}, sent {outcomes['ok']}, cancelled {outcomes['cancelled']}")
    print(f"the provider accepted {len(provider.messages)} messages")
    bodies = Counter(m.body for m in provider.messages)
    print(f"accepted more than once: {sum(1 for n in bodies.values() if n > 1)}")
    print(
        f"never accepted: {', '.join(m.body for m in messages if not bodies[m.body])}"
    )
    print(f"most requests in flight at the provider: {provider.max_in_flight}")
    held = max(m.sent_at - m.created_at for m in provider.messages)
    print(f"longest a message waited in the provider's own queue: {held:.2f} s")
    for sender in SENDERS:
        times = [m.created_at for m in provider.messages if m.from_ == sender]
        gap = min(b - a for a, b in itertools.pairwise(times))
        shown = " ".join(f"{t:.0f}" for t in times)
        print(f"{sender}: {len(times)} sent, min gap {gap:.2f} s, at {shown}")


if __name__ == "__main__":
    main()
