"""Code over HTTP: Portico's execution API against its own WebSocket and against Jupyter Server
with jupyter-server-nbmodel, and one-shot runs from the warm pool.  Run it with bench/run http.

    http rtt    `1+1`, one after another: Portico's WebSocket (v1; store_history on, as an HTTP
                run has it), then its HTTP API streamed (NDJSON), with Prefer: wait, and polled
                at once; Jupyter Server + nbmodel polled every 0.1 s (as jupyter-mcp-server does;
                nbmodel's JupyterLab client starts at 0.1 s and doubles) and, its best case, at
                once.  p50/p99 and runs per second.
    one-shot    POST /api/execute of `1+1` with the default pool (pool_size 1, pool_max 8): a burst
                of 8 back to back from an idle pool, the same burst once the pool has grown, and
                2 per second for 20 s (open loop).  p50/p90 end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import servers
from clients import WebSocketKernel
from servers import Server

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / ".venv" / "peers" / "bin"
CODE = {"code": "1+1"}


async def nbmodel_server() -> Server:
    """Jupyter Server with jupyter-server-nbmodel (the test peers' venv), its other extensions off."""
    port = servers.free_port()
    others = ("jupyter_mcp_server", "jupyter_server_ydoc", "jupyter_collaboration", "jupyterlab")
    off = "{" + ", ".join(f"{name!r}: False" for name in others) + "}"
    server = servers._spawn(
        "Jupyter Server + nbmodel",
        [
            str(PEERS / "jupyter"),
            "server",
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={servers.TOKEN}",
            "--allow-root",
            "--no-browser",
            f"--ServerApp.jpserver_extensions={off}",
            "--log-level=WARN",
        ],
        port,
    )
    await servers.wait_ready(server)
    return server


async def kernel_of(http: aiohttp.ClientSession, server: Server) -> str:
    async with http.post(server.url + "api/kernels", json={"name": "python3"}, headers=server.headers) as r:
        return str((await r.json())["id"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def streamed(http: aiohttp.ClientSession, server: Server, kernel: str) -> None:
    headers = {**server.headers, "Accept": "application/x-ndjson"}
    async with http.post(server.url + f"api/kernels/{kernel}/execute", json=CODE, headers=headers) as r:
        async for line in r.content:
            if line.startswith(b'{"type":"done"'):
                return
    raise RuntimeError("the stream ended without done")


async def waited(http: aiohttp.ClientSession, server: Server, kernel: str) -> None:
    headers = {**server.headers, "Prefer": "wait=60"}
    async with http.post(server.url + f"api/kernels/{kernel}/execute", json=CODE, headers=headers) as r:
        if r.status != 200:
            raise RuntimeError(f"wait: {r.status} {await r.text()}")
        await r.read()


async def polled(http: aiohttp.ClientSession, server: Server, kernel: str, interval: float = 0.0) -> None:
    async with http.post(server.url + f"api/kernels/{kernel}/execute", json=CODE, headers=server.headers) as r:
        location = r.headers["Location"]
        await r.read()
    url = server.url.rstrip("/") + location
    while True:
        if interval:
            await asyncio.sleep(interval)
        async with http.get(url, headers=server.headers) as r:
            await r.read()
            if r.status != 202:
                if r.status != 200:
                    raise RuntimeError(f"poll: {r.status}")
                return


async def measure(run: Callable[[], Awaitable[None]], n: int) -> dict[str, float]:
    for _ in range(5):
        await run()
    times = []
    t_all = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        await run()
        times.append(time.perf_counter() - t0)
    total = time.perf_counter() - t_all
    return {"p50 ms": percentile(times, 0.5) * 1000, "p99 ms": percentile(times, 0.99) * 1000, "runs/s": n / total}


async def http_rtt(http: aiohttp.ClientSession, reps: int, n: int) -> str:
    portico = await servers.portico()
    nbmodel = await nbmodel_server()
    try:
        p_kernel, n_kernel = await kernel_of(http, portico), await kernel_of(http, nbmodel)
        ws = await WebSocketKernel.open(http, portico.url, portico.headers, p_kernel, True)
        await ws.execute("pass")

        async def over_ws() -> None:
            content = {"code": "1+1", "silent": False, "store_history": True, "user_expressions": {}}
            await (await ws.send("execute_request", {**content, "allow_stdin": False})).done()

        targets: dict[str, Callable[[], Awaitable[None]]] = {
            "Portico WebSocket (v1)": over_ws,
            "Portico HTTP, streamed": lambda: streamed(http, portico, p_kernel),
            "Portico HTTP, Prefer: wait": lambda: waited(http, portico, p_kernel),
            "Portico HTTP, polled at once": lambda: polled(http, portico, p_kernel),
            "Jupyter Server + nbmodel, polled every 0.1 s": lambda: polled(http, nbmodel, n_kernel, 0.1),
            "Jupyter Server + nbmodel, polled at once": lambda: polled(http, nbmodel, n_kernel),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
        for rep in range(reps):
            for name, run in targets.items():
                print(f"  http rtt · {name} · {rep + 1}/{reps}", file=sys.stderr, flush=True)
                results[name].append(await measure(run, n // 5 if "0.1 s" in name else n))
        await ws.close()
    finally:
        portico.stop()
        nbmodel.stop()
    ws_p50 = statistics.median(r["p50 ms"] for r in results["Portico WebSocket (v1)"])
    nb = results["Jupyter Server + nbmodel, polled every 0.1 s"]
    nb_rps, nb_p99 = statistics.median(r["runs/s"] for r in nb), statistics.median(r["p99 ms"] for r in nb)
    lines = [
        "**http rtt** (`1+1`, one after another)",
        "",
        "| target | p50 ms | p99 ms | runs/s | p50 ÷ WebSocket p50 | runs/s ÷ nbmodel (0.1 s) | its p99 ÷ p99 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results.items():
        p50 = statistics.median(r["p50 ms"] for r in runs)
        p99 = statistics.median(r["p99 ms"] for r in runs)
        rps = statistics.median(r["runs/s"] for r in runs)
        cells = [fmt([r[m] for r in runs]) for m in ("p50 ms", "p99 ms", "runs/s")]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {p50 / ws_p50:.2f}× | {rps / nb_rps:.1f}× | {nb_p99 / p99:.1f}× |"
        )
    return "\n".join(lines)


async def one_shot(http: aiohttp.ClientSession, server: Server) -> float:
    t0 = time.perf_counter()
    async with http.post(server.url + "api/execute", json=CODE, headers=server.headers) as r:
        body = await r.json()
        if r.status != 200 or body["status"] != "ok":
            raise RuntimeError(f"one-shot: {r.status} {body}")
    return time.perf_counter() - t0


async def pool_size(http: aiohttp.ClientSession, server: Server) -> int:
    async with http.get(server.url + "metrics", headers=server.headers) as r:
        for line in (await r.text()).splitlines():
            if line.startswith('portico_pool_kernels{kernelspec="python3"}'):
                return int(float(line.split()[-1]))
    return 0


async def wait_pool(http: aiohttp.ClientSession, server: Server, n: int) -> None:
    async with asyncio.timeout(120):
        while await pool_size(http, server) < n:
            await asyncio.sleep(0.1)


async def one_shots(http: aiohttp.ClientSession, reps: int) -> str:
    rows: dict[str, list[dict[str, float]]] = {
        "burst of 8, idle pool": [],
        "burst of 8, grown pool": [],
        "2/s for 20 s": [],
    }
    for rep in range(reps):
        print(f"  one-shot · {rep + 1}/{reps}", file=sys.stderr, flush=True)
        server = await servers.portico(pool=1)
        try:
            await wait_pool(http, server, 1)
            for name in ("burst of 8, idle pool", "burst of 8, grown pool"):
                times = [await one_shot(http, server) for _ in range(8)]
                rows[name].append({"p50 ms": percentile(times, 0.5) * 1000, "p90 ms": percentile(times, 0.9) * 1000})
                await wait_pool(http, server, 8)  # grown by the burst's demand
            tasks = []
            for _ in range(40):
                tasks.append(asyncio.create_task(one_shot(http, server)))
                await asyncio.sleep(0.5)
            times = await asyncio.gather(*tasks)
            rows["2/s for 20 s"].append(
                {"p50 ms": percentile(times, 0.5) * 1000, "p90 ms": percentile(times, 0.9) * 1000}
            )
        finally:
            server.stop()
    lines = ["**one-shot** (`POST /api/execute` of `1+1`, end to end; pool_size 1, pool_max 8)", ""]
    lines += ["| load | p50 ms | p90 ms |", "| --- | --- | --- |"]
    for name, runs in rows.items():
        lines.append(f"| {name} | {fmt([r['p50 ms'] for r in runs])} | {fmt([r['p90 ms'] for r in runs])} |")
    return "\n".join(lines)


def fmt(values: list[float]) -> str:
    med = statistics.median(values)
    digits = 0 if med >= 100 else 1 if med >= 10 else 2
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


async def main(reps: int, n: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        print(await http_rtt(http, reps, n) + "\n", flush=True)
        print(await one_shots(http, reps), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("-n", type=int, default=300, help="runs per target and repetition (http rtt)")
    args = parser.parse_args()
    asyncio.run(main(args.reps, args.n))
