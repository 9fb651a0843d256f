"""Nothing lost across a kernel restart: what a client sends while its kernel restarts is run by
the restarted kernel, with its output; what the old kernel never answered gets an error reply."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from portico_testing import KernelClient, Server, eventually, kernel_class_spec, logged, start_kernel, start_server

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

EXECUTE = {"silent": False, "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}


def result_of(outputs: list[dict[str, object]]) -> object:
    return [
        m["content"]["data"]["text/plain"]
        for m in outputs  # type: ignore[index]
        if m["header"]["msg_type"] == "execute_result"
    ]  # type: ignore[index]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = start_server()  # the default kernel_poll_interval: the death must be seen by other means
    yield srv
    srv.stop()


@pytest.mark.parametrize("v1", [pytest.param(True, id="v1"), pytest.param(False, id="json")])
async def test_an_execute_sent_while_the_kernel_restarts_is_answered_with_its_output(
    http: aiohttp.ClientSession, server: Server, v1: bool
) -> None:
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid, v1=v1)
    for attempt in range(3):
        crash = await client.request("execute_request", {"code": "import os; os._exit(1)", **EXECUTE})
        # Sent once the death is seen, while the kernel restarts (a fixed pause raced a kernel slowed
        # by a busy machine: the request then reached the old kernel, queued behind the crash).
        await client.next(
            lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting"
        )
        six = await client.request("execute_request", {"code": "6*7", **EXECUTE})
        crashed, _ = await client.collect(crash, timeout=60)  # answered first, by Portico
        assert crashed["content"]["status"] == "error" and crashed["content"]["ename"] == "DeadKernelError"
        reply, outputs = await client.collect(six, timeout=60)
        assert reply["content"]["status"] == "ok", (attempt, reply)
        kinds = [m["header"]["msg_type"] for m in outputs]
        assert "execute_input" in kinds and result_of(outputs) == ["42"], (attempt, kinds)
    await client.close()


async def test_requests_queued_behind_a_crash_are_answered_not_run(
    http: aiohttp.ClientSession, server: Server, tmp_path: Path
) -> None:
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


async def test_messages_sent_during_a_rest_restart_reach_the_new_kernel(
    http: aiohttp.ClientSession, server: Server
) -> None:
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


async def flood_stalled(
    client: KernelClient, srv: Server, during_stall: Any, marker: Path, flood: int = 6000
) -> tuple[dict[str, Any] | None, list[Any]]:
    """A flood whose output waits in the kernel's own iopub queue: Portico is stopped (SIGSTOP)
    once 1,000 numbers came, until the kernel has finished (it writes marker); during_stall() runs
    before SIGCONT.  The execute_reply, and what came on iopub (numbers, anything else) until idle."""
    msg_id = await client.request(
        "execute_request",
        {
            "code": f"for i in range({flood}): display({{'text/plain': str(i)}}, raw=True)\n"
            f"open({str(marker)!r}, 'w').close()",
            **EXECUTE,
        },
    )
    received: list[Any] = []
    reply, stalled = None, False
    async with asyncio.timeout(180):
        while True:
            msg = await client.messages.get()
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if msg["channel"] == "shell":
                reply = msg
            elif kind == "display_data":
                received.append(msg["content"]["data"]["text/plain"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return reply, received
            elif kind not in ("status", "execute_input"):
                received.append(msg)
            if not stalled and len(received) >= 1000:
                stalled = True
                os.kill(srv.proc.pid, signal.SIGSTOP)
                try:
                    async with asyncio.timeout(120):  # the kernel finishes the flood meanwhile
                        while not marker.exists():
                            await asyncio.sleep(0.05)
                    await asyncio.sleep(0.2)  # and sends its reply
                    await during_stall()
                finally:
                    os.kill(srv.proc.pid, signal.SIGCONT)


async def restart_during_a_stalled_flood(
    http: aiohttp.ClientSession, srv: Server, kid: str, client: KernelClient, marker: Path
) -> None:
    """A REST restart asked while Portico is stopped with a finished flood still in the kernel's
    queue: the restart answers 200, every number arrives with the flood's ok reply, and the new
    kernel serves."""
    restart: list[asyncio.Task[aiohttp.ClientResponse]] = []

    async def ask_for_a_restart() -> None:
        restart.append(asyncio.create_task(http.post(f"{srv.url}api/kernels/{kid}/restart", headers=srv.headers)))
        await asyncio.sleep(0.5)  # the request waits in the stalled server's socket

    reply, received = await flood_stalled(client, srv, ask_for_a_restart, marker)
    async with await restart[0] as r:
        assert r.status == 200, await r.text()
    assert received == [str(i) for i in range(6000)]
    assert reply is not None and reply["content"]["status"] == "ok"
    reply, outputs = await client.execute("6*7", timeout=60)
    assert result_of(outputs) == ["42"]


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
async def test_a_rest_restart_keeps_the_output_the_kernel_published_before_it(
    http: aiohttp.ClientSession, transport: str, tmp_path: Path
) -> None:
    """A flood the kernel finished, its output still in the kernel's queue, then a restart: every
    message reaches the client before the old kernel goes (TCP may pause seconds after a stall)."""
    srv = start_server("--kernel-transport", transport)
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid, v1=False)
        await restart_during_a_stalled_flood(http, srv, kid, client, tmp_path / "done")
        await client.close()
    finally:
        srv.stop()


async def test_output_that_died_in_a_killed_kernels_queue_is_told(
    http: aiohttp.ClientSession, server: Server, tmp_path: Path
) -> None:
    """The kernel finished the flood and answered, then was killed with the end of its output still
    queued: the client gets what came, in order, and a notice that the end may be missing."""
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid, v1=False)
    _, outputs = await client.execute("import os; print(os.getpid())")
    pid = int("".join(m["content"]["text"] for m in outputs if m["header"]["msg_type"] == "stream"))

    async def kill() -> None:
        os.kill(pid, signal.SIGKILL)

    reply, received = await flood_stalled(client, server, kill, tmp_path / "done")
    assert reply is not None and reply["content"]["status"] == "ok"
    numbers, notices = [r for r in received if isinstance(r, str)], [r for r in received if not isinstance(r, str)]
    assert numbers == [str(i) for i in range(len(numbers))] and len(numbers) < 6000
    assert [n["header"]["msg_type"] for n in notices] == ["stream"]
    assert notices[0]["metadata"] == {"portico_lost": None} and "may be missing" in notices[0]["content"]["text"]
    reply, outputs = await client.execute("1+1", timeout=60)  # restarted
    assert result_of(outputs) == ["2"]
    await client.close()


async def test_interrupts_during_a_restart_leave_it_alone(http: aiohttp.ClientSession, server: Server) -> None:
    """An interrupt that comes while the kernel restarts has nothing to interrupt (what clients send
    is held): it is answered 204 and neither the old kernel's last output nor the new kernel's
    start is cut by its signal."""
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid)
    for _ in range(3):
        restart = asyncio.create_task(http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers))
        interrupts = 0
        while not restart.done():
            async with http.post(f"{server.url}api/kernels/{kid}/interrupt", headers=server.headers) as r:
                assert r.status == 204
                interrupts += 1
            await asyncio.sleep(0.02)
        async with await restart as r:
            assert r.status == 200, await r.text()
        assert interrupts > 1
        reply, outputs = await client.execute("6*7", timeout=60)
        assert result_of(outputs) == ["42"]
    await client.close()


async def test_a_request_a_restart_cuts_is_answered_as_cut_never_ok(
    http: aiohttp.ClientSession, server: Server
) -> None:
    """A cell that runs when a restart comes, and would finish while the old kernel shuts down: it
    is answered KernelRestarted with a prefix of its output, never ok with output that ended with
    the old process."""
    kid = await start_kernel(http, server)
    client = await KernelClient.connect(http, server, kid)
    await client.execute("import time")
    for _ in range(3):
        running = await client.request(
            "execute_request",
            {"code": "print(-1, flush=True); time.sleep(1)\nfor i in range(3000): print(i)", **EXECUTE},
        )
        first = await client.next(
            lambda m, running=running: (
                m["header"]["msg_type"] == "stream" and m["parent_header"].get("msg_id") == running
            )
        )
        async with http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers) as r:
            assert r.status == 200
        reply, outputs = await client.collect(running, timeout=60)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KernelRestarted", reply
        printed = "".join(m["content"]["text"] for m in [first, *outputs] if m["header"]["msg_type"] == "stream")
        numbers = printed.split()
        assert numbers == [str(i) for i in range(-1, len(numbers) - 1)] and len(numbers) < 3001
        assert [m["header"]["msg_type"] for m in outputs][-1] == "error"
        await client.execute("import time", timeout=60)
    await client.close()


async def test_a_restart_of_a_stopped_kernel_cuts_what_it_owes_and_brings_a_new_one(
    http: aiohttp.ClientSession,
) -> None:
    """A kernel that answers nothing (SIGSTOP: hung, or its iopub stalled past
    kernel_restart_output_wait): the restart waits that long for its output, cuts the rest, and
    a new kernel serves; the request it was running is answered KernelRestarted."""
    srv = start_server("--kernel-restart-output-wait", "1", "--kernel-shutdown-wait", "1")
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        _, outputs = await client.execute("import os, time; print(os.getpid())")
        pid = int("".join(m["content"]["text"] for m in outputs if m["header"]["msg_type"] == "stream"))
        running = await client.request("execute_request", {"code": "time.sleep(30)", **EXECUTE})
        await client.next(lambda m: m["header"]["msg_type"] == "execute_input")
        os.kill(pid, signal.SIGSTOP)
        async with http.post(f"{srv.url}api/kernels/{kid}/restart", headers=srv.headers) as r:
            assert r.status == 200, await r.text()
        reply, _ = await client.collect(running, timeout=60)
        assert reply["content"]["ename"] == "KernelRestarted", reply
        reply, outputs = await client.execute("6*7", timeout=60)
        assert result_of(outputs) == ["42"]
        assert any("did not catch up within 1 s" in line for line in list(srv.stderr))
        assert any("restarted in" in line and "the old kernel's output 1." in line for line in list(srv.stderr))
        await client.close()
    finally:
        srv.stop()


BEAT = """
import threading, time
kernel, parent = get_ipython().kernel, get_ipython().kernel.get_parent()
def beat():
    while True:
        kernel.session.send(kernel.iopub_socket, "stream", {"name": "stdout", "text": "beat\\n"}, parent=parent)
        time.sleep(0.01)
threading.Thread(target=beat, daemon=True).start()
"""


async def test_output_a_restart_cuts_is_not_reported_as_lost(http: aiohttp.ClientSession) -> None:
    """The old kernel's output for a request the restart cut reaches Portico and is dropped on
    purpose: it must not count as a hole in the kernel's numbering (a false 'N messages lost')
    when the old kernel publishes anything else after it (here a background thread's output,
    in the parent of a cell that finished).  Portico is stopped mid-flood so that the kernel's
    queue is far behind when the restart comes, and its wait for that output runs out."""
    srv = start_server("--kernel-restart-output-wait", "0.2")
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        await client.execute(BEAT)
        running = await client.request(
            "execute_request", {"code": "for i in range(10**7): display({'text/plain': str(i)}, raw=True)", **EXECUTE}
        )
        for _ in range(1000):
            await client.next(lambda m: m["header"]["msg_type"] == "display_data")
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            restart = asyncio.create_task(http.post(f"{srv.url}api/kernels/{kid}/restart", headers=srv.headers))
            await asyncio.sleep(4)  # the kernel queues its flood and its beats meanwhile
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        async with await restart as r:
            assert r.status == 200, await r.text()
        reply, _ = await client.collect(running, timeout=60)
        assert reply["content"]["ename"] == "KernelRestarted", reply
        reply, outputs = await client.execute("6*7", timeout=60)
        assert result_of(outputs) == ["42"]
        assert any("did not catch up within 0.2 s" in line for line in list(srv.stderr))
        assert not [line for line in list(srv.stderr) if "never reached Portico" in line]
        await client.close()
    finally:
        srv.stop()


QUIET_CONTROL = """
from ipykernel.ipkernel import IPythonKernel


class QuietControl(IPythonKernel):
    def _publish_status(self, status, channel, parent=None):
        if channel != "control":  # as some kernels do: no busy and idle for control requests
            super()._publish_status(status, channel, parent)
"""


async def test_a_kernel_without_status_for_control_keeps_its_output_across_a_restart(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The restart's barrier cannot be a control request's idle here: it waits while the
    kernel's iopub still flows, and the flood the kernel finished arrives whole."""
    kernel_class_spec(tmp_path, "quiet", "quiet_control", QUIET_CONTROL, "QuietControl")
    srv = start_server(env={"JUPYTER_PATH": str(tmp_path)})
    try:
        kid = await start_kernel(http, srv, name="quiet")
        assert await logged(srv, "publishes no status for control requests", timeout=60)
        client = await KernelClient.connect(http, srv, kid, v1=False)
        await restart_during_a_stalled_flood(http, srv, kid, client, tmp_path / "done")
        await client.close()
    finally:
        srv.stop()


async def test_what_a_stopped_kernel_never_took_is_not_run_by_the_new_one(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """Requests sent on to a hung kernel that never read them wait in ZeroMQ's queues; a restarted
    kernel keeps its addresses, and ZeroMQ reconnects to them.  None of them may reach the new
    kernel after Portico has answered them "Not run": each is answered KernelRestarted and none runs."""
    srv = start_server("--kernel-restart-output-wait", "0.5", "--kernel-shutdown-wait", "0.5")
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        _, outputs = await client.execute("import os; print(os.getpid())")
        os.kill(
            int("".join(m["content"]["text"] for m in outputs if m["header"]["msg_type"] == "stream")), signal.SIGSTOP
        )
        padding = "#" * (1 << 20)  # 40 MB in all: far more than the socket's buffers hold
        queued = [
            await client.request(
                "execute_request", {"code": f"open({str(tmp_path / f'ran-{i}')!r}, 'w')\n{padding}", **EXECUTE}
            )
            for i in range(40)
        ]

        async def all_sent_on() -> (
            bool
        ):  # Portico took them all before the restart (else it holds them for the new kernel)
            async with http.get(srv.url + "metrics", headers=srv.headers) as r:
                m = re.search(r"^portico_requests_tracked (\S+)$", await r.text(), re.M)
            return m is not None and float(m.group(1)) >= len(queued)

        await eventually(all_sent_on, "Portico sending the requests on to the stopped kernel")
        async with http.post(f"{srv.url}api/kernels/{kid}/restart", headers=srv.headers) as r:
            assert r.status == 200, await r.text()
        for msg_id in queued:
            reply, _ = await client.collect(msg_id, timeout=60)
            assert reply["content"].get("ename") == "KernelRestarted", reply["content"]
        reply, outputs = await client.execute("6*7", timeout=60)
        assert result_of(outputs) == ["42"]
        assert not list(tmp_path.glob("ran-*")), "a request answered 'Not run' ran in the new kernel"
        await client.close()
    finally:
        srv.stop()
