"""What the remote tier's tests share: where a kernel runs, its processes on the test hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from portico_testing import KernelClient, Server, eventually, processes_with, stdout_of

WHERE = (
    "import os, socket; "
    "print(socket.gethostname(), os.readlink('/proc/self/ns/net'), os.getpid(), os.environ.get('KERNEL_ID'))"
)
SLEEP = "import time; print('running', flush=True); time.sleep(60)"  # interrupted once it prints
GONE_WITHIN = 10  # seconds, as the issue asks: no kernel process left on any host after its end


def kernel_pids(kernel_id: str) -> list[int]:
    """Live processes of that kernel on any test host (they share this machine's PID space)."""
    return processes_with(f"KERNEL_ID={kernel_id}")


async def where(client: KernelClient) -> tuple[str, str, int, str]:
    reply, outputs = await client.execute(WHERE)
    assert reply["content"]["status"] == "ok", reply["content"]
    host, netns, pid, kid = stdout_of(outputs).split()
    return host, netns, int(pid), kid


@asynccontextmanager
async def connected(http: aiohttp.ClientSession, server: Server, kernel_id: str) -> AsyncIterator[KernelClient]:
    client = await KernelClient.connect(http, server, kernel_id)
    try:
        yield client
    finally:
        await client.close()


async def all_gone(kernel_id: str) -> None:
    await eventually(lambda: not kernel_pids(kernel_id), f"kernel {kernel_id}'s processes gone", GONE_WITHIN)


async def interrupted(http: aiohttp.ClientSession, server: Server, kernel_id: str, client: KernelClient) -> str:
    """Run SLEEP, interrupt it through the REST API once it runs; the ename it ended with."""
    msg_id = await client.request("execute_request", {"code": SLEEP, "silent": False})
    await client.next(lambda m: m["header"]["msg_type"] == "stream" and "running" in m["content"]["text"])
    async with http.post(f"{server.url}api/kernels/{kernel_id}/interrupt", headers=server.headers) as r:
        assert r.status == 204
    reply = await client.next(lambda m: m["parent_header"].get("msg_id") == msg_id and "ename" in m["content"])
    return str(reply["content"]["ename"])
