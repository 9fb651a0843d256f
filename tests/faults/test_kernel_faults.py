"""Floods under CPU contention, kernels killed or stopped mid-flood: every client still gets
every message, or a clear status, and the kernel keeps serving."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from portico_testing import (
    KernelClient,
    Server,
    pong,
    raw_websocket,
    start_kernel,
    start_server,
    stdout_of,
    websocket_frames,
)

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

FLOOD = 20_000
FLOOD_CODE = f"for i in range({FLOOD}): display({{'text/plain': str(i)}}, raw=True)"


@pytest.fixture
def busy_loops() -> Iterator[None]:
    """Two processes that take a core each, as on CI's shared machine."""
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    yield
    for loop in loops:
        loop.kill()
        loop.wait()


def numbers(outputs: list[dict[str, object]]) -> list[str]:
    return [
        m["content"]["data"]["text/plain"]
        for m in outputs  # type: ignore[index]
        if m["header"]["msg_type"] == "display_data"
    ]  # type: ignore[index]


async def kernel_pid(client: KernelClient) -> int:
    _, outputs = await client.execute("import os; print(os.getpid())")
    return int(stdout_of(outputs))


# each protocol and each transport once (they are layers apart: the WebSocket's encoding, ZeroMQ's
# transport); all four pairs cost the serial fault tier a minute more
@pytest.mark.parametrize(
    ("v1", "transport"), [pytest.param(True, "tcp", id="v1-tcp"), pytest.param(False, "ipc", id="json-ipc")]
)
async def test_a_flood_under_cpu_contention_arrives_whole(
    http: aiohttp.ClientSession, busy_loops: None, transport: str, v1: bool
) -> None:
    srv = start_server("--kernel-transport", transport)
    try:
        kid = await start_kernel(http, srv)
        clients = [await KernelClient.connect(http, srv, kid, v1=v1) for _ in range(2)]
        msg_id = await clients[0].request(
            "execute_request",
            {
                "code": FLOOD_CODE,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        reply, outputs = await clients[0].collect(msg_id, timeout=180)
        assert reply["content"]["status"] == "ok"
        assert numbers(outputs) == [str(i) for i in range(FLOOD)]
        watcher = await clients[1].next(
            lambda m: m["parent_header"].get("msg_id") == msg_id and m["header"]["msg_type"] == "display_data"
        )
        seen = [watcher["content"]["data"]["text/plain"]]
        while len(seen) < FLOOD:
            m = await clients[1].next(
                lambda m: m["parent_header"].get("msg_id") == msg_id and m["header"]["msg_type"] == "display_data"
            )
            seen.append(m["content"]["data"]["text/plain"])
        assert seen == [str(i) for i in range(FLOOD)]
        for c in clients:
            await c.close()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server()
    yield srv
    srv.stop()


async def test_kill_9_during_a_flood_with_three_clients(http: aiohttp.ClientSession, server: Server) -> None:
    kid = await start_kernel(http, server)
    clients = [await KernelClient.connect(http, server, kid, v1=v1) for v1 in (True, False, True)]
    pid = await kernel_pid(clients[0])
    long_flood = FLOOD_CODE.replace(str(FLOOD), str(5 * FLOOD))
    await clients[0].request(
        "execute_request",
        {
            "code": long_flood,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    await clients[1].next(lambda m: m["header"]["msg_type"] == "display_data")
    os.kill(pid, signal.SIGKILL)
    for c in clients:
        await c.next(
            lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting",
            timeout=60,
        )
    for c in clients:
        reply, outputs = await c.execute("print('back')", timeout=60)
        assert reply["content"]["status"] == "ok" and stdout_of(outputs) == "back\n"
        await c.close()


async def test_kill_9_during_an_input_wait(http: aiohttp.ClientSession, server: Server) -> None:
    kid = await start_kernel(http, server)
    clients = [await KernelClient.connect(http, server, kid) for _ in range(3)]
    pid = await kernel_pid(clients[0])
    asking = await clients[0].request(
        "execute_request",
        {
            "code": "input('? ')",
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": True,
            "stop_on_error": True,
        },
    )
    await clients[0].next(lambda m: m["header"]["msg_type"] == "input_request")
    os.kill(pid, signal.SIGKILL)
    reply, _ = await clients[0].collect(asking, timeout=60)
    assert reply["content"]["ename"] == "DeadKernelError"
    for c in clients:
        reply, outputs = await c.execute("print('back')", timeout=60)
        assert stdout_of(outputs) == "back\n"
        await c.close()


async def test_a_kernel_stopped_for_10_s_resumes_with_nothing_lost(http: aiohttp.ClientSession, server: Server) -> None:
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid, v1=False)
    pid = await kernel_pid(client)
    code = "import time\nfor i in range(2000):\n    display({'text/plain': str(i)}, raw=True)\n    time.sleep(0.002)"
    msg_id = await client.request(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    await client.next(lambda m: m["header"]["msg_type"] == "display_data")
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(10)
        async with http.get(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
            assert r.status == 200  # the server serves while its kernel is stopped
    finally:
        os.kill(pid, signal.SIGCONT)
    reply, outputs = await client.collect(msg_id, timeout=60)
    got = numbers(outputs)
    assert reply["content"]["status"] == "ok" and got == [str(i) for i in range(1, 2000)]
    await client.close()


async def test_a_client_reading_at_20_kb_s_beside_a_fast_one_gets_everything(http: aiohttp.ClientSession) -> None:
    """The slow client falls back to the journal past its small buffer and catches up, in order and
    exactly once; the fast one is not held back by it."""
    srv = start_server("--client-buffer-limit", "16384")
    slow = None
    try:
        kid = await start_kernel(http, srv)
        slow = raw_websocket(srv, kid, "slow")
        slow.setblocking(False)
        fast = await KernelClient.connect(http, srv, kid, v1=False)
        count = 150  # 105 KB: far past the slow client's 16 KB buffer, into the journal
        code = f"for i in range({count}): display({{'text/plain': str(i).rjust(400, '.')}}, raw=True)"
        msg_id = await fast.request(
            "execute_request",
            {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
        )
        loop, buffer, seen, read = asyncio.get_running_loop(), bytearray(), [], 0
        fast_done = asyncio.create_task(fast.collect(msg_id, timeout=120))
        read_when_fast_done = None
        async with asyncio.timeout(180):
            while len(seen) < count:
                chunk = await loop.sock_recv(slow, 1024)
                assert chunk, "the slow client was disconnected"
                read += len(chunk)
                buffer += chunk
                for opcode, payload in websocket_frames(buffer):
                    if opcode == 9:  # a keep-alive ping, answered as a browser would
                        pong(slow, payload)
                        continue
                    assert opcode == 1, opcode  # text: no close frame
                    m = orjson.loads(payload)
                    if m["header"]["msg_type"] == "display_data":
                        seen.append(m["content"]["data"]["text/plain"].lstrip("."))
                if fast_done.done() and read_when_fast_done is None:
                    read_when_fast_done = read
                await asyncio.sleep(0.05)  # about 20 KB/s
        assert seen == [str(i) for i in range(count)]
        _, outputs = await fast_done
        assert numbers(outputs) == [str(i).rjust(400, ".") for i in range(count)]
        assert read_when_fast_done is not None and read_when_fast_done < read / 2, (
            "the fast client waited for the slow one"
        )
        await fast.close()
    finally:
        if slow is not None:
            slow.close()
        srv.stop()


async def test_a_restart_during_a_flood_answers_it_and_serves_on(http: aiohttp.ClientSession, server: Server) -> None:
    kid = await start_kernel(http, server)
    clients = [await KernelClient.connect(http, server, kid, v1=v1) for v1 in (True, False)]
    msg_id = await clients[0].request(
        "execute_request",
        {
            "code": FLOOD_CODE.replace(str(FLOOD), str(5 * FLOOD)),
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
    )
    await clients[1].next(lambda m: m["header"]["msg_type"] == "display_data")
    async with http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers) as r:
        assert r.status == 200
    reply, outputs = await clients[0].collect(msg_id, timeout=60)
    assert reply["content"]["ename"] == "KernelRestarted"
    got = numbers(outputs)
    assert got == [str(i) for i in range(len(got))], "what arrived before the restart is whole and in order"
    for c in clients:
        reply, out = await c.execute("print('after')", timeout=60)
        assert stdout_of(out) == "after\n"
        await c.close()
