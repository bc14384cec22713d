"""Wiring the admin server and the log into a ``fetchq run``."""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from fetchq.admin.controls import RunControls
from fetchq.admin.ctl import admin_file
from fetchq.admin.security import parse_listen
from fetchq.admin.server import AdminServer
from fetchq.logs import QueueLog

__all__ = ["attach_admin", "attach_log"]

log = Logger(namespace="fetchq.admin")


def attach_log(run: Any, controls: Any = None) -> None:
    """Log the run's width, rate and hold changes with their cause."""

    def cause() -> str | None:
        return None if controls is None else controls.cause

    def controlled() -> bool:
        controller = run.controller
        return controller is not None and bool(getattr(controller, "attached", False))

    run.queue.subscribe(QueueLog(cause, controlled))


def controls_for(run: Any) -> Any:
    """The :class:`~fetchq.admin.controls.Controls` of a run: local, or
    :class:`~fetchq.admin.shared.SharedControls` on the Redis engine."""
    from fetchq.shared_run import SharedRun

    if isinstance(run, SharedRun):
        from fetchq.admin.shared import SharedControls

        return SharedControls(run)
    return RunControls(run)


def attach_admin(
    run: Any,
    reactor: Any,
    listen: str,
    *,
    metrics_open: bool = False,
    token: str | None = None,
) -> AdminServer:
    """Serve the admin API, page and metrics for ``run`` on ``listen``
    (``[HOST:]PORT``); the token goes to the file beside the state, and the
    server stops when the run ends.

    Raises:
        ValueError: a bad ``listen``.
        twisted.internet.error.CannotListenError: the port is taken.
    """
    host, port = parse_listen(listen)
    controls = controls_for(run)
    recipe = run.recipe
    server = AdminServer(
        controls,
        reactor,
        host=host,
        port=port,
        token=token,
        token_file=admin_file(recipe.state.path),
        metrics_open=metrics_open,
        kind=recipe.kind,
    )
    server.start()
    attach_log(run, controls)

    def stop(result: Any) -> Any:
        server.stop()
        return result

    run._finished.addBoth(stop)
    return server
