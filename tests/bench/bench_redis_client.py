"""Which Redis client for the Redis engine: txredisapi (Twisted-native)
against redis-py's asyncio client, on claim/ack round trips shaped like the
engine's own.

Both clients run the same two Lua scripts on a redis-server this benchmark
starts: *claim* (server time, pop the first pending items of a sorted set,
lease them in another with a deadline, return them) and *ack* (drop the
lease, store the record).  Each client runs in its own process (txredisapi
on Twisted's default reactor, redis-py on ``asyncio.run``) and measures
claim+ack pairs per second:

- ``one at a time``: one claim of 1 item, then its ack, then the next;
- ``50 at once``: 50 such loops concurrently (the client multiplexes them on
  its connections: txredisapi a pool of 4, redis-py a pool of 50);
- ``batched``: claims of 50 items and one ack call per 50 records (what the
  engine does: ``RedisStore.claim(limit=...)`` and batched acks).

Run: ``.venv/bin/python -m tests.bench.bench_redis_client`` (redis-py is not
a dependency: ``pip install redis`` for its half, else it is skipped).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from tests.bench._common import table

CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local got = redis.call('ZPOPMIN', KEYS[1], tonumber(ARGV[1]))
local out = {}
for i = 1, #got, 2 do
  redis.call('ZADD', KEYS[2], now + 30000, got[i])
  out[#out + 1] = got[i]
end
return out
"""

ACK = """
for i = 1, #ARGV, 2 do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
return #ARGV / 2
"""

KEYS = ("{b}:pending", "{b}:leased", "{b}:records")
RECORD = json.dumps({"outcome": "ok", "status": 200, "bytes": 1024, "elapsed": 0.01})


def fill(url: str, n: int) -> None:
    """Put ``n`` pending items in the sorted set (redis-cli free: one raw
    connection with pipelined ZADDs)."""
    import socket

    host, port = url.split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        conn.recv(64)
        chunk = []
        for i in range(n):
            key = KEYS[0].encode()
            member = f"item{i}".encode()
            chunk.append(
                b"*4\r\n$4\r\nZADD\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n$%d\r\n%s\r\n"
                % (len(key), key, len(str(i)), i, len(member), member)
            )
            if len(chunk) == 1000 or i == n - 1:
                conn.sendall(b"".join(chunk))
                want = len(chunk)
                got = b""
                while got.count(b"\r\n") < want:
                    got += conn.recv(65536)
                chunk = []


def child_tx(url: str, mode: str, pairs: int) -> float:
    import txredisapi
    from twisted.internet import defer, reactor

    host, port = url.split("//")[1].split("/")[0].split(":")
    out: dict[str, Any] = {}

    async def main() -> None:
        client = await txredisapi.ConnectionPool(
            host, int(port), poolsize=4, convertNumbers=False
        )
        claim = await client.script_load(CLAIM)
        ack = await client.script_load(ACK)
        keys_claim, keys_ack = [KEYS[0], KEYS[1]], [KEYS[1], KEYS[2]]

        async def loop(count: int, batch: int) -> None:
            for _ in range(count):
                got = await client.evalsha(claim, keys_claim, [batch])
                args: list[str] = []
                for item in got:
                    args += [item, RECORD]
                await client.evalsha(ack, keys_ack, args)

        began = time.perf_counter()
        if mode == "one":
            await loop(pairs, 1)
        elif mode == "fifty":
            await defer.gatherResults(
                [defer.ensureDeferred(loop(pairs // 50, 1)) for _ in range(50)]
            )
        else:
            await loop(pairs // 50, 50)
        out["seconds"] = time.perf_counter() - began
        await client.disconnect()

    def go() -> None:
        d = defer.ensureDeferred(main())
        d.addErrback(lambda f: out.update(error=f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]

    reactor.callWhenRunning(go)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]
    if "error" in out:
        raise SystemExit(out["error"])
    return float(out["seconds"])


def child_py(url: str, mode: str, pairs: int) -> float:
    import asyncio

    import redis.asyncio as aredis

    async def main() -> float:
        pool = aredis.BlockingConnectionPool.from_url(
            url, max_connections=50 if mode == "fifty" else 1
        )
        client = aredis.Redis(connection_pool=pool)
        claim = client.register_script(CLAIM)
        ack = client.register_script(ACK)

        async def loop(count: int, batch: int) -> None:
            for _ in range(count):
                got = await claim(keys=[KEYS[0], KEYS[1]], args=[batch])
                args: list[Any] = []
                for item in got:
                    args += [item, RECORD]
                await ack(keys=[KEYS[1], KEYS[2]], args=args)

        began = time.perf_counter()
        if mode == "one":
            await loop(pairs, 1)
        elif mode == "fifty":
            await asyncio.gather(*(loop(pairs // 50, 1) for _ in range(50)))
        else:
            await loop(pairs // 50, 50)
        seconds = time.perf_counter() - began
        await client.aclose()
        return seconds

    return asyncio.run(main())


def one(client: str, url: str, mode: str, pairs: int) -> float:
    fill(url, pairs)
    command = [sys.executable, "-m", "tests.bench.bench_redis_client"]
    command += ["--child", client, "--url", url, "--mode", mode]
    command += ["--pairs", str(pairs)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{client} {mode}: {done.stderr}")
    return pairs / float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=["tx", "py"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.child:
        run = child_tx if args.child == "tx" else child_py
        print(run(args.url, args.mode, args.pairs), flush=True)
        return
    from tests.redis_server import RedisServer

    try:
        import redis  # noqa: F401

        clients = ["tx", "py"]
    except ImportError:
        clients = ["tx"]
    server = RedisServer()
    try:
        names = {"one": "one at a time", "fifty": "50 at once", "batch": "batched"}
        best: dict[tuple[str, str], float] = {}
        for _ in range(args.repeats):
            for mode in names:
                for client in clients:
                    rate = one(client, server.url, mode, args.pairs)
                    key = (client, mode)
                    best[key] = max(best.get(key, 0.0), rate)
    finally:
        server.stop()
    rows = []
    for mode, name in names.items():
        row = [name]
        for client in ("tx", "py"):
            rate = best.get((client, mode))
            row.append("not installed" if rate is None else f"{rate:,.0f}/s")
        tx, py = best.get(("tx", mode)), best.get(("py", mode))
        row.append(f"{tx / py:.2f}" if tx and py else "")
        rows.append(row)
    print(
        table(
            f"claim + ack pairs per second (best of {args.repeats}, "
            f"{args.pairs:,} pairs)",
            ["calls", "txredisapi", "redis-py asyncio", "tx / py"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
