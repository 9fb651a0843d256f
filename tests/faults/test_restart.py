"""Nothing lost across a kernel restart: what a client sends while its kernel restarts is run by
the restarted kernel, with its output; what the old kernel never answered gets an error reply."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import KernelClient, Server, start_kernel, start_server

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

EXECUTE = {"silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False,
           "stop_on_error": True}


def result_of(outputs: list[dict[str, object]]) -> object:
    return [m["content"]["data"]["text/plain"] for m in outputs  # type: ignore[index]
            if m["header"]["msg_type"] == "execute_result"]  # type: ignore[index]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server()  # the default kernel_poll_interval: the death must be seen by other means
    yield srv
    srv.stop()


@pytest.mark.parametrize("v1", [pytest.param(True, id="v1"), pytest.param(False, id="json")])
async def test_an_execute_sent_while_the_kernel_restarts_is_answered_with_its_output(
        http: aiohttp.ClientSession, server: Server, v1: bool) -> None:
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid, v1=v1)
    for attempt in range(3):
        crash = await client.request("execute_request", {"code": "import os; os._exit(1)", **EXECUTE})
        await asyncio.sleep(0.3)
        six = await client.request("execute_request", {"code": "6*7", **EXECUTE})
        crashed, _ = await client.collect(crash, timeout=60)  # answered first, by Portico
        assert crashed["content"]["status"] == "error" and crashed["content"]["ename"] == "DeadKernelError"
        reply, outputs = await client.collect(six, timeout=60)
        assert reply["content"]["status"] == "ok", (attempt, reply)
        kinds = [m["header"]["msg_type"] for m in outputs]
        assert "execute_input" in kinds and result_of(outputs) == ["42"], (attempt, kinds)
    await client.close()


async def test_requests_queued_behind_a_crash_are_answered_not_run(http: aiohttp.ClientSession,
                                                                   server: Server, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid)
    await client.execute("import time")
    crash = await client.request("execute_request", {"code": "time.sleep(0.5); import os; os._exit(1)", **EXECUTE})
    queued = await client.request("execute_request", {"code": f"open({str(marker)!r}, 'w')", **EXECUTE})
    reply, _ = await client.collect(crash, timeout=60)
    assert reply["content"]["ename"] == "DeadKernelError"
    reply, outputs = await client.collect(queued, timeout=60)
    assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KernelRestarted"
    assert [m["header"]["msg_type"] for m in outputs] == ["error"]
    assert not marker.exists()
    await client.close()


async def test_messages_sent_during_a_rest_restart_reach_the_new_kernel(http: aiohttp.ClientSession,
                                                                      server: Server) -> None:
    kid = await start_kernel(http, server)
    clients = [await KernelClient.connect(http, server, kid, v1=v1) for v1 in (True, False)]
    await clients[0].execute("x = 1")
    restart = asyncio.create_task(http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers))
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{server.url}api/kernels/{kid}", headers=server.headers) as r:
                if (await r.json())["execution_state"] == "restarting":
                    break
    answers = await asyncio.gather(*(c.execute("'x' in dir()", timeout=60) for c in clients))
    for reply, outputs in answers:
        assert reply["content"]["status"] == "ok" and result_of(outputs) == ["False"]
    async with await restart as r:
        assert r.status == 200
    late = await KernelClient.connect(http, server, kid)
    reply, outputs = await late.execute("1+1")
    assert result_of(outputs) == ["2"]
    for c in [*clients, late]:
        await c.close()
