"""
Tokens per second per core of ``coze-edge token-service``, with the bundled simulator as
Coze. Run through ``scripts/token-bench [--misses N] [--hits N] [--concurrency N]``.

The service is the real command in a process of its own; the simulator and the load
(aiohttp, ``--concurrency`` requests in flight) run in this one. Per core means tokens
answered per CPU second the service's process used (from /proc), so the load and the
simulator sharing the machine do not count against it; the wall-clock rate is shown too.

  misses   each request for a device the replica has no token for: check the secret,
           sign an RS256 JWT (2048-bit key), exchange it at Coze, cache the token
  hits     each request for a device whose token is cached: check the secret, answer
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from coze_edge.simulator import Simulator
from tests.support.cli import start_cli
from tests.support.jwt_app import MASTER_KEY, jwt_app, secret_for
from tests.support.ports import free_port

FIRST_DEVICE = 7_000_000_000


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_up(session: aiohttp.ClientSession, url: str) -> None:
    async with asyncio.timeout(20):
        while True:
            try:
                async with session.get(f"{url}/healthz") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)


async def load(
    session: aiohttp.ClientSession, url: str, device_ids: Sequence[str], concurrency: int
) -> None:
    """One request per id, ``concurrency`` at a time; every answer must be a token."""
    ids = iter(device_ids)

    async def worker() -> None:
        for device_id in ids:
            headers = {"Authorization": f"Bearer {secret_for(device_id)}"}
            async with session.post(
                f"{url}/token", json={"device_id": device_id}, headers=headers
            ) as answer:
                if answer.status != 200:
                    raise RuntimeError(f"device {device_id}: HTTP {answer.status}")
                await answer.read()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def phase(
    session: aiohttp.ClientSession, url: str, pid: int, ids: Sequence[str], concurrency: int
) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of the service)."""
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    await load(session, url, ids, concurrency)
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
    return len(ids) / wall, len(ids) / max(cpu, 1e-9)


async def bench(misses: int, hits: int, concurrency: int) -> list[tuple[str, str]]:
    app = jwt_app("bench")
    async with Simulator() as sim:
        sim.register_jwt_app(app.app_id, app.kid, app.public_pem)
        with tempfile.TemporaryDirectory(prefix="token-bench-") as tmp:
            key = app.write_private_key(Path(tmp) / "private_key.pem")
            master = Path(tmp) / "master.key"
            master.write_bytes(MASTER_KEY)
            master.chmod(0o600)
            port = free_port()
            service = await start_cli(
                "token-service", "serve", "--app-id", app.app_id, "--key-id", app.kid,
                "--private-key-file", str(key), "--master-key-file", str(master),
                "--coze-api-base", sim.api_base, "--port", str(port),
                stdout=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            url = f"http://127.0.0.1:{port}"
            connector = aiohttp.TCPConnector(limit=concurrency)
            try:
                async with aiohttp.ClientSession(connector=connector) as session:
                    await wait_up(session, url)
                    ids = [str(FIRST_DEVICE + n) for n in range(misses)]
                    miss_wall, miss_cpu = await phase(session, url, service.pid, ids, concurrency)
                    again = [ids[n % len(ids)] for n in range(hits)]
                    hit_wall, hit_cpu = await phase(session, url, service.pid, again, concurrency)
            finally:
                service.terminate()
                await service.wait()
        exchanged = len(sim.jwt_grants)
    if exchanged != misses:
        raise RuntimeError(f"{exchanged} exchanges at Coze for {misses} misses")
    return [
        (f"cache misses: sign + exchange ({misses} devices)", f"{miss_cpu:,.0f} tokens/s"),
        ("  wall clock, load and simulator on the same cores", f"{miss_wall:,.0f} tokens/s"),
        (f"cache hits ({hits} requests)", f"{hit_cpu:,.0f} tokens/s"),
        ("  wall clock, load and simulator on the same cores", f"{hit_wall:,.0f} tokens/s"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/token-bench", description=__doc__)
    parser.add_argument("--misses", type=int, default=2000)
    parser.add_argument("--hits", type=int, default=10000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args(argv)
    rows = asyncio.run(bench(args.misses, args.hits, args.concurrency))
    print(
        f"coze-edge token-service bench ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; per CPU second of the service's process)"
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
