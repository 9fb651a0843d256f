"""Remote kernels on SSH hosts (network namespaces with their own sshd, built here as the tests
build them): start of a remote kernel against a local one on the same Portico, a start from a
warm pool of remote kernels, and the `1+1` round trip of a remote kernel through Portico against
direct ZeroMQ to the same remote kernel.  Needs root.  Run it with `bench/run remote`.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import servers
from clients import DirectKernel, Kernel, WebSocketKernel
from jupyter_client.asynchronous import AsyncKernelClient

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from remote.hosts import Hosts, free_subnet, ssh_spec  # noqa: E402

SPEC = "ssh_hosts"


class DirectRemote(DirectKernel):
    """jupyter_client over ZeroMQ straight to a remote kernel, with its CurveZMQ keys: the bench's
    direct client, attached to a kernel it did not start."""

    @classmethod
    async def attach(cls, info: dict[str, Any]) -> DirectRemote:
        kc = AsyncKernelClient()
        kc.load_connection_info(info)
        kc.start_channels()
        await kc.wait_for_ready(timeout=30)
        return cls(None, kc)  # type: ignore[arg-type]

    async def close(self) -> None:
        for task in self._readers:
            task.cancel()
        self.kc.stop_channels()  # the kernel is Portico's to end


async def portico(hosts: Hosts, pool: int) -> servers.Server:
    os.environ.update(hosts.env(), JUPYTER_PATH=hosts.jupyter_path)
    args = ["--pool-kernels", SPEC] if pool else []
    server = await servers.portico(pool=pool, extra=args)
    return server


async def create(http: aiohttp.ClientSession, server: servers.Server, name: str) -> str:
    async with http.post(server.url + "api/kernels", json={"name": name}, headers=server.headers) as r:
        if r.status != 201:
            raise RuntimeError(f"POST /api/kernels {name}: {r.status} {await r.text()}")
        return str((await r.json())["id"])


async def delete(http: aiohttp.ClientSession, server: servers.Server, kernel_id: str) -> None:
    async with http.delete(f"{server.url}api/kernels/{kernel_id}", headers=server.headers):
        pass


async def ready_time(http: aiohttp.ClientSession, server: servers.Server, name: str) -> float:
    """POST to the first kernel_info_reply on a new WebSocket."""
    t0 = time.perf_counter()
    kernel_id = await create(http, server, name)
    ws = await WebSocketKernel.open(http, server.url, server.headers, kernel_id, True)
    pending = await ws.send("kernel_info_request", {})
    await pending.reply.wait()
    elapsed = time.perf_counter() - t0
    await ws.close()
    await delete(http, server, kernel_id)
    return elapsed


async def pool_full(http: aiohttp.ClientSession, server: servers.Server) -> None:
    async with asyncio.timeout(120):
        while True:
            async with http.get(server.url + "metrics", headers=server.headers) as r:
                if f'portico_pool_kernels{{kernelspec="{SPEC}"}} 1.0' in await r.text():
                    return
            await asyncio.sleep(0.05)


async def rtts(kernel: Kernel, n: int) -> float:
    for _ in range(30):
        await kernel.execute("1+1")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await kernel.execute("1+1")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def connection_of(hosts: Hosts, kernel_id: str, netns: str) -> dict[str, Any]:
    """The remote kernel's connection file (its host shares /tmp), with its host's address."""
    (path,) = glob.glob(f"/tmp/kernel-{kernel_id}_*.json")
    info = json.loads(Path(path).read_text())
    info["ip"] = next(h.address for h in hosts.hosts if h.sshd and os.readlink(f"/proc/{h.sshd.pid}/ns/net") == netns)
    return info


async def measure(hosts: Hosts, reps: int, n: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {k: [] for k in ("local", "remote", "remote pool", "rtt portico", "rtt direct")}
    async with aiohttp.ClientSession() as http:
        cold = await portico(hosts, 0)
        warm = await portico(hosts, 1)
        try:
            await ready_time(http, cold, SPEC)  # the first remote start pays paramiko's import and the RSA key
            for rep in range(reps):
                print(f"  remote · {rep + 1}/{reps}", file=sys.stderr, flush=True)
                results["local"].append(await ready_time(http, cold, "python3"))
                results["remote"].append(await ready_time(http, cold, SPEC))
                await pool_full(http, warm)
                results["remote pool"].append(await ready_time(http, warm, SPEC))
                kernel_id = await create(http, cold, SPEC)
                ws = await WebSocketKernel.open(http, cold.url, cold.headers, kernel_id, True)
                code = "import os; print(os.readlink('/proc/self/ns/net'))"
                netns = await where(ws, code)
                direct = await DirectRemote.attach(connection_of(hosts, kernel_id, netns))
                results["rtt portico"].append(await rtts(ws, n))
                results["rtt direct"].append(await rtts(direct, n))
                await direct.close()
                await ws.close()
                await delete(http, cold, kernel_id)
        finally:
            cold.stop()
            warm.stop()
    return results


async def where(ws: WebSocketKernel, code: str) -> str:
    """The text a cell prints, read off the kernel's iopub through the WebSocket."""
    lines: list[str] = []
    original = ws._dispatch

    def tap(channel: str, msg_type: str, parent_id: str | None, content: Any, size: int) -> None:
        if msg_type == "stream":
            lines.append(content()["text"])
        original(channel, msg_type, parent_id, content, size)

    ws._dispatch = tap  # type: ignore[method-assign]
    await ws.execute(code)
    ws._dispatch = original  # type: ignore[method-assign]
    return "".join(lines).strip()


def fmt(values: list[float], unit: str) -> str:
    return f"{statistics.median(values):.2f} {unit} [{min(values):.2f}–{max(values):.2f}]"


def report(r: dict[str, list[float]], reps: int, n: int) -> str:
    local, remote, pool = (statistics.median(r[k]) for k in ("local", "remote", "remote pool"))
    portico_rtt, direct_rtt = statistics.median(r["rtt portico"]), statistics.median(r["rtt direct"])
    return "\n".join(
        [
            f"**remote kernels** (2 SSH hosts in network namespaces; {reps} repetitions; rtt: median of {n})",
            "",
            "| measure | value | target | met |",
            "| --- | --- | --- | --- |",
            f"| start, local kernel (POST to kernel_info_reply) | {fmt(r['local'], 's')} | | |",
            f"| start, remote kernel | {fmt(r['remote'], 's')} | ≤ local + 0.6 s | "
            f"{'yes' if remote <= local + 0.6 else 'no'} (+{remote - local:.2f} s) |",
            f"| start from a warm pool of remote kernels | {fmt([v * 1000 for v in r['remote pool']], 'ms')} | ≤ 50 ms "
            f"| {'yes' if pool <= 0.05 else 'no'} |",
            f"| `1+1` rtt, remote kernel through Portico (v1) | {fmt(r['rtt portico'], 'ms')} | ≤ 1.15× direct | "
            f"{'yes' if portico_rtt <= 1.15 * direct_rtt else 'no'} ({portico_rtt / direct_rtt:.2f}×) |",
            f"| `1+1` rtt, direct ZeroMQ to the same remote kernel | {fmt(r['rtt direct'], 'ms')} | | |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--n", type=int, default=300, help="round trips per measurement")
    parser.add_argument("--out", help="also write the table (markdown) to this file")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    hosts = Hosts(scratch, str(os.getpid() % 100000), free_subnet())
    try:
        hosts.build(2)
        jupyter = scratch / "share" / "jupyter"
        ssh_spec(jupyter, SPEC, [h.address for h in hosts.hosts], sys.executable)
        hosts.jupyter_path = str(jupyter)
        text = report(asyncio.run(measure(hosts, args.reps, args.n)), args.reps, args.n)
    finally:
        hosts.teardown()
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
