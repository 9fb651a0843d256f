"""Portico against Jupyter Kernel Gateway, Jupyter Server and direct ZeroMQ, side by side.

Every scenario runs each target in turn, repetition after repetition (interleaved), on the
same machine in the same run; the table shows medians with [min–max] over repetitions and
the ratio Portico/target on the scenario's headline figure.  Run it with bench/run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import proxying
import servers
import soak
from clients import DirectKernel, Kernel, WebSocketKernel
from servers import Server

FLOOD_N = 20_000
FLOOD = f"from IPython.display import display\nfor i in range({FLOOD_N}): display({{'text/plain': str(i)}}, raw=True)"
BIGOUT = "print('x' * 20_000_000)"


NOTEBOOK_CELLS = [
    "import json",
    "# GET /hello/:name\nreq = json.loads(REQUEST)\nprint('hello', req['path']['name'])",
    "# ResponseInfo GET /hello/:name\nprint(json.dumps({'status': 200, 'headers': {'Content-Type': 'text/plain'}}))",
]


@dataclass(frozen=True)
class Target:
    server: str | None  # None: ZeroMQ directly, no web server
    v1: bool = False
    rate_limited: bool = False
    http: bool = False  # a plain HTTP scenario: no WebSocket protocol to name

    @property
    def label(self) -> str:
        if self.server is None:
            return "direct ZeroMQ"
        if self.http:
            return self.server
        protocol = "v1" if self.v1 else "json"
        return f"{self.server} ({protocol}{', default rate limits' if self.rate_limited else ''})"


class Context:
    """The servers of one scenario, started fresh for it."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.servers: dict[tuple[str, bool], Server] = {}
        self._lock = asyncio.Lock()  # concurrent callers share one server per target, never start two

    async def server(self, name: str, rate_limited: bool = False, fresh: bool = False, **kw: Any) -> Server:
        key = (name, rate_limited)
        async with self._lock:
            if fresh and key in self.servers:
                self.servers.pop(key).stop()
            if key not in self.servers:
                starter = servers.STARTERS[name]
                self.servers[key] = await (starter(**kw) if name == "Portico" else starter(rate_limit=rate_limited))
            return self.servers[key]

    async def custom(self, key: tuple[Any, ...], starter: Callable[[], Awaitable[Server]]) -> Server:
        async with self._lock:
            if key not in self.servers:
                self.servers[key] = await starter()  # type: ignore[index]
            return self.servers[key]  # type: ignore[index]

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    async def create(self, server: Server) -> str:
        async with self.http.post(server.url + "api/kernels", json={"name": "python3"}, headers=server.headers) as r:
            if r.status != 201:
                raise RuntimeError(f"{server.name}: POST /api/kernels -> {r.status} {await r.text()}")
            return str((await r.json())["id"])

    async def delete(self, server: Server, kernel_id: str) -> None:
        async with self.http.delete(f"{server.url}api/kernels/{kernel_id}", headers=server.headers):
            pass

    async def kernel(self, target: Target, **kw: Any) -> tuple[Kernel, Callable[[], Awaitable[None]]]:
        """A connected kernel for the target, and how to dispose of it."""
        if target.server is None:
            direct = await DirectKernel.start()
            return direct, direct.close
        server = await self.server(target.server, target.rate_limited, **kw)
        kernel_id = await self.create(server)
        ws = await WebSocketKernel.open(self.http, server.url, server.headers, kernel_id, target.v1)
        await ws.execute("pass")  # iopub subscribed and the kernel warm

        async def dispose() -> None:
            await ws.close()
            await self.delete(server, kernel_id)

        return ws, dispose


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# scenarios ----------------------------------------------------------------------------------
async def start(ctx: Context, target: Target, warm: bool) -> dict[str, float]:
    if target.server is None:
        t0 = time.perf_counter()
        direct = await DirectKernel.start()  # waits for its kernel_info_reply
        elapsed = time.perf_counter() - t0
        await direct.close()
        return {"start s": elapsed}
    server = await ctx.server(target.server, pool=1 if warm else 0)
    if warm:
        await wait_for_pool(ctx.http, server)
    t0 = time.perf_counter()
    kernel_id = await ctx.create(server)
    ws = await WebSocketKernel.open(ctx.http, server.url, server.headers, kernel_id, target.v1)
    pending = await ws.send("kernel_info_request", {})
    await pending.reply.wait()
    elapsed = time.perf_counter() - t0
    await ws.close()
    await ctx.delete(server, kernel_id)
    return {"start s": elapsed}


async def wait_for_pool(http: aiohttp.ClientSession, server: Server) -> None:
    async with asyncio.timeout(60):
        while True:
            async with http.get(server.url + "metrics", headers=server.headers) as r:
                for line in (await r.text()).splitlines():
                    if line.startswith('portico_pool_kernels{kernelspec="python3"}') and float(line.split()[-1]) >= 1:
                        return
            await asyncio.sleep(0.05)


async def rtt(ctx: Context, target: Target, n: int) -> dict[str, float]:
    kernel, dispose = await ctx.kernel(target)
    for _ in range(20):
        await kernel.execute("1+1")
    server = ctx.servers.get((target.server or "", False))
    cpu0 = server.cpu_seconds() if server else 0.0
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await kernel.execute("1+1")
        times.append(time.perf_counter() - t0)
    cpu = (server.cpu_seconds() - cpu0) / n * 1000 if server else float("nan")
    await dispose()
    return {
        "p50 ms": percentile(times, 0.5) * 1000,
        "p90 ms": percentile(times, 0.9) * 1000,
        "p99 ms": percentile(times, 0.99) * 1000,
        "server CPU ms/execute": cpu,
    }


async def flood(ctx: Context, target: Target) -> dict[str, float]:
    kernel, dispose = await ctx.kernel(target)
    t0 = time.perf_counter()
    pending = await kernel.execute(FLOOD)
    elapsed = time.perf_counter() - t0
    await dispose()
    return {
        "time s": elapsed,
        "received": pending.outputs,
        "lost": FLOOD_N - pending.outputs,
        "msgs/s": pending.outputs / elapsed,
    }


async def bigout(ctx: Context, target: Target) -> dict[str, float]:
    if target.server is not None:
        await ctx.server(target.server, fresh=True)  # a fresh process: its peak RSS is this scenario's
    kernel, dispose = await ctx.kernel(target)
    t0 = time.perf_counter()
    await kernel.execute(BIGOUT)
    elapsed = time.perf_counter() - t0
    server = ctx.servers.get((target.server or "", False))
    peak = server.rss_kib("VmHWM") / 1024 if server else float("nan")
    await dispose()
    return {"time s": elapsed, "server peak RSS MB": peak}


async def concurrent(ctx: Context, target: Target, kernels: int = 16, each: int = 100) -> dict[str, float]:
    opened = await asyncio.gather(*(ctx.kernel(target) for _ in range(kernels)))
    times: list[float] = []

    async def drive(kernel: Kernel) -> None:
        for _ in range(each):
            t0 = time.perf_counter()
            await kernel.execute("1+1")
            times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(drive(k) for k, _ in opened))
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(dispose() for _, dispose in opened))
    return {
        "executes/s": kernels * each / elapsed,
        "p50 ms": percentile(times, 0.5) * 1000,
        "p99 ms": percentile(times, 0.99) * 1000,
    }


async def open_loop(
    ctx: Context, target: Target, rate: float = 200, kernels: int = 16, n: int = 2000
) -> dict[str, float]:
    """Executes offered at a fixed rate, whatever the answers do (round-robin over the kernels),
    timed from when each was due: tails compared at the same load for every target."""
    opened = await asyncio.gather(*(ctx.kernel(target) for _ in range(kernels)))
    times: list[float] = []
    unanswered = 0

    async def one(kernel: Kernel, due: float) -> None:
        nonlocal unanswered
        pending = await kernel.send(
            "execute_request",
            {"code": "1+1", "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        )
        try:
            async with asyncio.timeout(60):  # a reply or idle that never comes is counted, not waited for
                await pending.done()
        except TimeoutError:
            unanswered += 1
            return
        times.append(time.perf_counter() - due)

    t0 = time.perf_counter()
    running = []
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        running.append(asyncio.create_task(one(opened[i % kernels][0], due)))
    await asyncio.gather(*running)
    elapsed = time.perf_counter() - t0
    await asyncio.gather(*(dispose() for _, dispose in opened))
    return {
        "offered /s": rate,
        "served /s": n / elapsed,
        "unanswered": unanswered,
        "p50 ms": percentile(times, 0.5) * 1000,
        "p99 ms": percentile(times, 0.99) * 1000,
    }


async def connections(ctx: Context, target: Target, count: int = 1000, kernels: int = 10) -> dict[str, float]:
    assert target.server is not None
    server = await ctx.server(target.server, fresh=True)
    probe, dispose = await ctx.kernel(target)
    unloaded = [await timed(probe) for _ in range(100)]
    ids = [await ctx.create(server) for _ in range(kernels)]
    rss0 = server.rss_kib()
    idle = [
        await WebSocketKernel.open(ctx.http, server.url, server.headers, ids[i % kernels], target.v1)
        for i in range(count)
    ]
    await asyncio.sleep(1)
    rss = server.rss_kib()
    loaded = [await timed(probe) for _ in range(100)]
    for ws in idle:
        await ws.close()
    for kernel_id in ids:
        await ctx.delete(server, kernel_id)
    await dispose()
    return {
        "RSS for 1000 conns MB": (rss - rss0) / 1024,
        "rtt p50 unloaded ms": percentile(unloaded, 0.5) * 1000,
        "rtt p50 loaded ms": percentile(loaded, 0.5) * 1000,
        "loaded/unloaded": percentile(loaded, 0.5) / percentile(unloaded, 0.5),
    }


async def timed(kernel: Kernel) -> float:
    t0 = time.perf_counter()
    await kernel.execute("1+1")
    return time.perf_counter() - t0


def notebook_file() -> str:
    import nbformat

    path = os.path.join(servers.tempfile.gettempdir(), "portico-bench-api.ipynb")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, path)
    return path


async def notebook(ctx: Context, target: Target, pool: int, n: int, concurrency: int = 8) -> dict[str, float]:
    """Requests to one annotated cell (with a ResponseInfo cell) at a fixed concurrency."""
    assert target.server is not None
    name = target.server
    server = await ctx.custom(
        (name, "notebook", pool), lambda: servers.notebook_api(name, notebook_file(), pool, "hello/ready")
    )
    url, headers = server.url + "hello/", server.headers

    async def one(i: int) -> float:
        t0 = time.perf_counter()
        async with ctx.http.get(f"{url}n{i}", headers=headers) as r:
            body = await r.read()
            if r.status != 200 or body != f"hello n{i}\n".encode():
                raise RuntimeError(f"{name}: {r.status} {body[:200]!r}")
        return time.perf_counter() - t0

    for i in range(4 * pool):  # every kernel of the pool warm
        await one(i)
    times: list[float] = []
    requests = iter(range(n))

    async def client() -> None:
        for i in requests:
            times.append(await one(i))

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {
        "requests/s": n / elapsed,
        "p50 ms": percentile(times, 0.5) * 1000,
        "p99 ms": percentile(times, 0.99) * 1000,
    }


async def soak_run(ctx: Context, target: Target) -> dict[str, float]:
    assert target.server is not None
    server = await ctx.server(target.server, fresh=True)
    return await soak.soak(ctx.http, server, float(os.environ.get("BENCH_SOAK_SECONDS", 600)))


async def proxy(ctx: Context, target: Target, name: str) -> dict[str, float]:
    assert target.server is not None
    return await proxying.run_scenario(ctx.http, name, target.server)


# the run --------------------------------------------------------------------------------------
WS_TARGETS = [
    Target("Portico", True),
    Target("Portico", False),
    Target("Kernel Gateway", True),
    Target("Kernel Gateway", False),
    Target("Jupyter Server", True),
    Target("Jupyter Server", False),
]
ALL_TARGETS = [Target(None), *WS_TARGETS]
LIMITED = [Target("Kernel Gateway", False, True), Target("Jupyter Server", False, True)]
NOTEBOOK_TARGETS = [Target("Portico", http=True), Target("Kernel Gateway", http=True)]
PROXY_TARGETS = [Target(name, http=True) for name in proxying.PROXY_TARGETS]

SCENARIOS: dict[str, tuple[list[Target], Callable[..., Awaitable[dict[str, float]]], dict[str, Any], str, bool]] = {
    # name: (targets, function, kwargs, headline metric, higher is better)
    "start (cold)": (ALL_TARGETS, start, {"warm": False}, "start s", False),
    "start (warm pool)": ([Target("Portico", True), Target("Portico", False)], start, {"warm": True}, "start s", False),
    "rtt": (ALL_TARGETS, rtt, {"n": int(os.environ.get("BENCH_RTT_N", 500))}, "p50 ms", False),
    "flood": (ALL_TARGETS + LIMITED, flood, {}, "msgs/s", True),
    "bigout": (ALL_TARGETS, bigout, {}, "time s", False),
    "concurrent": (ALL_TARGETS, concurrent, {}, "executes/s", True),
    "concurrent (open loop)": (
        ALL_TARGETS,
        open_loop,
        {"n": int(os.environ.get("BENCH_OPEN_LOOP_N", 2000))},
        "p99 ms",
        False,
    ),
    "connections": (WS_TARGETS, connections, {}, "RSS for 1000 conns MB", False),
    "notebook (pool 1)": (
        NOTEBOOK_TARGETS,
        notebook,
        {"pool": 1, "n": int(os.environ.get("BENCH_NOTEBOOK_N", 600))},
        "requests/s",
        True,
    ),
    "proxy small GET": (PROXY_TARGETS, proxy, {"name": "proxy small GET"}, "requests/s", True),
    "proxy download": (
        PROXY_TARGETS + [Target("plain relay", http=True), Target("nginx", http=True)],
        proxy,
        {"name": "proxy download"},
        "MB/s",
        True,
    ),
    "proxy upload": (PROXY_TARGETS, proxy, {"name": "proxy upload"}, "MB/s", True),
    "proxy websocket": (PROXY_TARGETS, proxy, {"name": "proxy websocket"}, "p50 ms", False),
    "proxy cold start": (PROXY_TARGETS, proxy, {"name": "proxy cold start"}, "first byte s", False),
    "notebook (pool 4)": (
        NOTEBOOK_TARGETS,
        notebook,
        {"pool": 4, "n": 2 * int(os.environ.get("BENCH_NOTEBOOK_N", 600))},
        "requests/s",
        True,
    ),
    # 10 minutes (BENCH_SOAK_SECONDS): run only when named
    "soak": ([Target("Portico", False)], soak_run, {}, "lost", False),
}
ON_REQUEST = {"soak"}


def fmt(values: list[float]) -> str:
    finite = [v for v in values if v == v]
    if not finite:
        return "–"
    med = statistics.median(finite)
    digits = 0 if abs(med) >= 100 else 1 if abs(med) >= 10 else 2 if abs(med) >= 1 else 3
    if len(finite) == 1 or min(finite) == max(finite):
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(finite):.{digits}f}–{max(finite):.{digits}f}]"


def table(name: str, results: dict[Target, list[dict[str, float]]], headline: str, higher: bool) -> str:
    metrics = list(next(iter(results.values()))[0])
    lines = [
        f"**{name}**",
        "",
        "| target | " + " | ".join(metrics) + " | Portico/target |",
        "| --- |" + " --- |" * (len(metrics) + 1),
    ]
    portico = {
        t.v1: statistics.median(r[headline] for r in runs) for t, runs in results.items() if t.server == "Portico"
    }
    for target, runs in results.items():
        cells = [fmt([r[m] for r in runs]) for m in metrics]
        mine = statistics.median(r[headline] for r in runs)
        ours = portico.get(target.v1 if target.server else True)
        ratio = (
            "" if target.server == "Portico" or ours is None or not mine == mine or mine == 0 else f"{ours / mine:.2f}×"
        )
        lines.append(f"| {target.label} | " + " | ".join(cells) + f" | {ratio} |")
    lines.append("")
    lines.append(
        f"Ratios compare {headline} ({'higher' if higher else 'lower'} is better), "
        "Portico on the same protocol (v1 for direct ZeroMQ)."
    )
    return "\n".join(lines)


async def run(selected: list[str], reps: int, only: set[str] | None = None) -> str:
    out = [
        f"Portico {servers.version_of('Portico')}, Jupyter Kernel Gateway {servers.version_of('Kernel Gateway')}, "
        f"Jupyter Server {servers.version_of('Jupyter Server')}; {reps} interleaved repetitions; "
        "kernels: ipykernel with history off.",
        "",
    ]
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as http:
        for name in selected:
            targets, function, kwargs, headline, higher = SCENARIOS[name]
            targets = [t for t in targets if only is None or (t.server or "direct") in only]
            if not targets:
                continue
            ctx = Context(http)
            results: dict[Target, list[dict[str, float]]] = {t: [] for t in targets}
            try:
                for rep in range(reps):
                    for target in targets:
                        print(f"  {name} · {target.label} · {rep + 1}/{reps}", file=sys.stderr, flush=True)
                        results[target].append(await function(ctx, target, **kwargs))
            finally:
                ctx.stop()
            out.append(table(name, results, headline, higher))
            out.append("")
            print(out[-2], flush=True)
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "scenarios",
        nargs="*",
        default=[s for s in SCENARIOS if s not in ON_REQUEST],
        help=f"any of: {', '.join(SCENARIOS)} (soak only when named)",
    )
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of every scenario")
    parser.add_argument("--out", help="also write the tables (markdown) to this file")
    parser.add_argument(
        "--only", help="comma-separated targets to run: direct, Portico, Kernel Gateway, Jupyter Server"
    )
    args = parser.parse_args()
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {sorted(unknown)[0]!r}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 connections on each side
    only = {name.strip() for name in args.only.split(",")} if args.only else None
    report = asyncio.run(run(args.scenarios, args.reps, only))
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
