"""Adaptive width: find the pace that gets the most done without hurting
the remote side, and follow it when it changes.

The control layer sits on the core's events and calls its setters; the core
knows nothing of it.  In a few lines::

    from fetchq import ResizableDispatchQueue
    from fetchq.control import AdaptiveController

    queue = ResizableDispatchQueue(fetch, width=4)
    controller = AdaptiveController(min_width=1, max_width=64)
    controller.attach(queue)      # steers queue.width (and its rate if needed)
    ...
    controller.detach()           # the width stays where it was

- :mod:`fetchq.control.signals`: success, drop, throttle or ignore.
- :mod:`fetchq.control.limits`: the AIMD, Gradient and Default algorithms.
- :mod:`fetchq.control.controller`: the controller that runs them.
- :mod:`fetchq.control.sim`: simulated servers, to try settings.
"""

from fetchq.control.controller import AdaptiveController, Controller, FixedWidth
from fetchq.control.limits import AIMD, Default, Gradient, Limit, Step, Window
from fetchq.control.signals import Classifier, Signal, classify, classify_error

__all__ = [
    "AIMD",
    "AdaptiveController",
    "Classifier",
    "Controller",
    "Default",
    "FixedWidth",
    "Gradient",
    "Limit",
    "Signal",
    "Step",
    "Window",
    "algorithm",
    "classify",
    "classify_error",
]

ALGORITHMS = ("default", "gradient", "aimd")


def algorithm(name: str) -> Limit:
    """The algorithm called ``name`` (one of :data:`ALGORITHMS`), with its
    default settings."""
    if name == "default":
        return Default()
    if name == "gradient":
        return Gradient()
    if name == "aimd":
        return AIMD()
    raise ValueError(f"unknown algorithm {name!r}; expected one of {ALGORITHMS}")
