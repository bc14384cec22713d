"""A real ``redis-server`` for the tests, on a free loopback port.

``.ci/run`` installs Debian's ``redis-server`` when it is missing; a test
that needs one calls :func:`shared` (one server for the whole test process,
each test using a run name of its own) or makes a :class:`RedisServer` of
its own (to kill, restart or configure it).  Without ``redis-server`` on the
PATH, :func:`need_redis` skips the test and says why.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

from twisted.trial.unittest import SkipTest

__all__ = ["RedisServer", "need_redis", "run_name", "shared"]

_SHARED: RedisServer | None = None


def need_redis() -> str:
    """The redis-server binary, or skip the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SkipTest("redis-server is not installed (.ci/run installs it)")
    return binary


def run_name(prefix: str = "t") -> str:
    """A run name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process in a temporary directory.

    Args:
        options: extra ``--name value`` options, e.g. ``("--appendonly",
            "yes")``.
    """

    def __init__(self, *options: str) -> None:
        self.binary = need_redis()
        self.dir = tempfile.mkdtemp(prefix="fetchq-redis-")
        self.port = _free_port()
        self.options = options
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or start again, on the same port and directory)."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                "--daemonize",
                "no",
                "--enable-debug-command",
                "local",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def command(self, *args: str) -> bytes:
        """Send one command (inline, no spaces in arguments) and return the
        first reply bytes: for a test's own checks."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(" ".join(args).encode() + b"\r\n")
            return conn.recv(65536)

    def kill(self) -> None:
        """SIGKILL the server (what is not in its AOF is lost)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def shared() -> RedisServer:
    """The test process's shared server (started on first use)."""
    global _SHARED
    if _SHARED is None or _SHARED.process is None:
        _SHARED = RedisServer()
        atexit.register(_SHARED.stop)
    return _SHARED


def env_with_url(url: str) -> dict[str, Any]:
    """os.environ plus FETCHQ_TEST_REDIS_URL, for child processes."""
    return dict(os.environ, FETCHQ_TEST_REDIS_URL=url)
