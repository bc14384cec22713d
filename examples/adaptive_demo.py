"""Adaptive width: a controller finds how many requests a server takes at
once, and follows it when that changes.

The server is simulated (``fetchq.control.sim.CapacityServer``): it answers
in 25 ms while at most its capacity is in flight, and more slowly beyond.
Its capacity is 30 until 6 s, then 10, then 30 again from 12 s.  Everything
runs on a ``task.Clock``, so the 20 simulated seconds the 15,000 jobs take
pass in well under a second, with no network.

Run: ``python examples/adaptive_demo.py``.
"""

from __future__ import annotations

from twisted.internet import defer
from twisted.internet.task import Clock

from fetchq import ControlDecision, ResizableDispatchQueue
from fetchq.control import AdaptiveController
from fetchq.control.sim import CapacityServer

JOBS = 15_000


def main() -> None:
    clock = Clock()
    server = CapacityServer(clock, capacity=[(0, 30), (6, 10), (12, 30)], base=0.025)
    queue = ResizableDispatchQueue(server, width=1, clock=clock)
    done = defer.gatherResults([queue.put(i) for i in range(JOBS)])

    # Attach: from now on the controller steers queue.width.
    controller = AdaptiveController(min_width=1, max_width=100)
    controller.attach(queue)

    # Its decisions come through the queue's observers: print one a second.
    print(" time  capacity  width  in flight  latency  reason")
    next_print = 1.0

    def watch(event: object) -> None:
        nonlocal next_print
        if isinstance(event, ControlDecision) and event.time >= next_print:
            next_print += 1
            latency = "-" if event.latency is None else f"{event.latency * 1000:.0f} ms"
            print(
                f"{event.time:4.0f} s  {server.capacity(event.time):8d}  "
                f"{event.width:5d}  {event.in_flight:9d}  {latency:>7}  "
                f"{event.reason}"
            )

    queue.subscribe(watch)

    # Run the simulated clock until every job is done.
    while clock.calls and not done.called:
        clock.advance(clock.calls[0].getTime() - clock.seconds())

    controller.detach()
    print(
        f"all {JOBS:,} jobs done at {clock.seconds():.1f} s; detached, "
        f"the width stays {queue.width}"
    )


if __name__ == "__main__":
    main()
