"""Watch and steer a queue or a run while it works: a token-protected JSON
API, a live page, ``fetchq ctl``, Prometheus ``/metrics`` (see
:mod:`fetchq.admin.server` for the routes, :mod:`fetchq.admin.security`
for the locks).

For any :class:`~fetchq.queue.ResizableDispatchQueue`::

    from fetchq.admin import serve_admin

    admin = serve_admin(queue, port=8765)     # 127.0.0.1:8765
    print(admin.login_link())                 # open it in a browser

``fetchq run RECIPE --admin 8765`` does the same for a run (on the local
engine or on Redis), writes the token beside the state, and ``fetchq ctl
RECIPE status`` talks to it.  The admin acts only through the queue's and
the store's public methods, and listens to the same events as everyone else.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fetchq.admin.controls import (
        AdminError,
        Controls,
        QueueControls,
        RunControls,
    )
    from fetchq.admin.server import API, AdminServer

_LAZY = {
    "API": "fetchq.admin.server",
    "AdminServer": "fetchq.admin.server",
    "AdminError": "fetchq.admin.controls",
    "Controls": "fetchq.admin.controls",
    "QueueControls": "fetchq.admin.controls",
    "RunControls": "fetchq.admin.controls",
}


def __getattr__(name: str) -> Any:
    """The server and its controls, imported when first asked for: ``fetchq
    ctl`` imports this package for its client and needs neither (the web
    server and the metrics take a third of a second to import)."""
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(where), name)


__all__ = [
    "API",
    "AdminError",
    "AdminServer",
    "Controls",
    "QueueControls",
    "RunControls",
    "serve_admin",
]


def serve_admin(
    queue: Any,
    *,
    reactor: Any = None,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    token_file: Path | None = None,
    metrics_open: bool = False,
    name: str = "queue",
    on_stop: Any = None,
    controller: Any = None,
) -> AdminServer:
    """Serve the admin API, page and metrics for ``queue``, and return the
    (started) server.

    Args:
        queue: a :class:`~fetchq.queue.ResizableDispatchQueue`.
        reactor: listens (default: the global reactor).
        host: the address (loopback unless told otherwise).
        port: the port (0: any free one; ``server.port`` says which).
        token: the bearer token (default ``$FETCHQ_ADMIN_TOKEN`` or random).
        token_file: where to write it (mode 0600).
        metrics_open: serve ``/metrics`` without the token.
        name: what the page and status call the queue.
        on_stop: what ``POST /api/v1/stop`` does (default ``queue.stop()``).
        controller: an adaptive controller the API may attach and detach.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    from fetchq.admin.controls import QueueControls
    from fetchq.admin.server import AdminServer

    controls = QueueControls(queue, name=name, on_stop=on_stop, controller=controller)
    server = AdminServer(
        controls,
        reactor,
        host=host,
        port=port,
        token=token,
        token_file=token_file,
        metrics_open=metrics_open,
    )
    return server.start()
