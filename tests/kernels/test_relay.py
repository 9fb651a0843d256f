"""The channels WebSocket, over both protocols, against real kernels."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from portico_testing import (
    KernelClient,
    Server,
    eventually,
    logged,
    raw_websocket,
    start_kernel,
    start_server,
    stdout_of,
)

PROTOCOLS = [pytest.param(True, id="v1"), pytest.param(False, id="json")]


def types(outputs: list[dict[str, object]]) -> list[str]:
    return [m["header"]["msg_type"] for m in outputs]  # type: ignore[index]


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_execute_outputs_and_reply(http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool) -> None:
    client = await KernelClient.connect(http, server, kernel, v1=v1)
    assert client.v1 == v1
    reply, outputs = await client.execute("print('hi'); 6*7")
    assert reply["content"]["status"] == "ok" and reply["channel"] == "shell"
    assert stdout_of(outputs) == "hi\n"
    result = [m for m in outputs if m["header"]["msg_type"] == "execute_result"][0]
    assert result["content"]["data"]["text/plain"] == "42"
    if not v1:
        assert result["msg_type"] == "execute_result" and result["msg_id"] == result["header"]["msg_id"]
    reply, outputs = await client.execute("1/0")
    assert reply["content"]["status"] == "error" and "error" in types(outputs)
    await client.close()


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_iopub_reaches_everyone_replies_only_the_sender(
    http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool
) -> None:
    a = await KernelClient.connect(http, server, kernel, v1=v1)
    b = await KernelClient.connect(http, server, kernel, v1=not v1)
    msg_id = await a.request("execute_request", {"code": "print('from a')", "silent": False})
    await a.collect(msg_id)
    seen = []
    async with asyncio.timeout(10):
        while "stream" not in seen or "status" not in seen:
            msg = await b.messages.get()
            if msg["parent_header"].get("msg_id") == msg_id:
                seen.append(msg["header"]["msg_type"])
                assert msg["channel"] == "iopub"
    assert "execute_input" in seen
    # b's own request works, and a does not get b's reply
    reply, _ = await b.execute("1")
    assert reply["content"]["status"] == "ok"
    await asyncio.sleep(0.2)
    while not a.messages.empty():
        assert a.messages.get_nowait()["channel"] == "iopub"
    await a.close()
    await b.close()


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_input_request_goes_to_the_requester(
    http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool
) -> None:
    a = await KernelClient.connect(http, server, kernel, v1=v1)
    b = await KernelClient.connect(http, server, kernel, v1=v1)
    msg_id = await a.request("execute_request", {"code": "print('got', input('name? '))", "allow_stdin": True})
    prompt = await a.next(lambda m: m["channel"] == "stdin")
    assert prompt["header"]["msg_type"] == "input_request" and prompt["content"]["prompt"] == "name? "
    await a.send(a.message("input_reply", {"value": "Ada"}, channel="stdin", parent=prompt["header"]))
    reply, outputs = await a.collect(msg_id)
    assert stdout_of(outputs) == "got Ada\n"
    assert all(m["channel"] != "stdin" for m in list(b.messages._queue))  # type: ignore[attr-defined]
    await a.close()
    await b.close()


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_binary_buffers_both_ways(http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool) -> None:
    client = await KernelClient.connect(http, server, kernel, v1=v1)
    blob = bytes(range(256)) * 64
    setup = (
        "from comm import create_comm, get_comm_manager\n"
        "got = []\n"
        "def target(comm, msg):\n"
        "    got.append(bytes(msg['buffers'][0]))\n"
        "    comm.on_msg(lambda m: got.append(bytes(m['buffers'][0])))\n"
        "get_comm_manager().register_target('echo', target)\n"
    )
    reply, _ = await client.execute(setup)
    assert reply["content"]["status"] == "ok"
    comm_id = uuid.uuid4().hex
    await client.send(
        client.message("comm_open", {"comm_id": comm_id, "target_name": "echo", "data": {}}, buffers=[blob])
    )
    await client.send(client.message("comm_msg", {"comm_id": comm_id, "data": {}}, buffers=[blob[::-1]]))
    _, outputs = await client.execute(f"print(got == [{blob!r}, {blob[::-1]!r}])")
    assert stdout_of(outputs) == "True\n"
    # kernel -> client
    _, outputs = await client.execute(
        "c = create_comm(target_name='x', data={}); c.send(data={'n': 1}, buffers=[bytes(range(256)) * 64, b'\\x00'])"
    )
    sent = [m for m in outputs if m["header"]["msg_type"] == "comm_msg"][0]
    assert [bytes(b) for b in sent["buffers"]] == [blob, b"\x00"]
    await client.close()


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_bad_messages_get_errors_and_the_kernel_keeps_serving(
    http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool
) -> None:
    client = await KernelClient.connect(http, server, kernel, v1=v1)
    other = await KernelClient.connect(http, server, kernel, v1=not v1)
    good = client.message("kernel_info_request", {})
    bad_frames: list[bytes | str] = [b"\x01\x02", struct.pack("<Q", 9) + b"\x00" * 16, struct.pack("!I", 4) + b"xx"]
    if v1:
        bad_frames.append("{}")
        import orjson

        from portico.kernels import wire

        parts = [orjson.dumps(good[k]) for k in ("header", "parent_header", "metadata", "content")]
        bad_frames.append(wire.to_v1(b"nochannel", parts))
        bad_frames.append(wire.to_v1(b"shell", [b""] + parts[1:]))
    else:
        bad_frames += [
            "{not json",
            "[]",
            '{"channel": "shell", "content": {}}',
            '{"channel": "bogus", "header": {"msg_id": "1", "msg_type": "x"}}',
            '{"header": {"msg_id": "1", "msg_type": "x"}}',
        ]
    for frame in bad_frames:
        if isinstance(frame, str):
            await client.ws.send_str(frame)
        else:
            await client.ws.send_bytes(frame)
        err = await client.next(lambda m: m["header"]["msg_type"] == "portico_error", timeout=5)
        assert err["content"]["evalue"], frame
    reply, outputs = await client.execute("print('still here')")
    assert stdout_of(outputs) == "still here\n"
    reply, _ = await other.execute("2+2")
    assert reply["content"]["status"] == "ok"
    await client.close()
    await other.close()


async def test_unknown_kernel_websocket_is_404(http: aiohttp.ClientSession, server: Server) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await KernelClient.connect(http, server, "no-such-kernel")
    assert e.value.status == 404


async def test_same_session_id_replaces_the_stale_connection(
    http: aiohttp.ClientSession, server: Server, kernel: str
) -> None:
    old = await KernelClient.connect(http, server, kernel, session_id="s1")
    new = await KernelClient.connect(http, server, kernel, session_id="s1")
    await asyncio.wait_for(old.closed.wait(), 5)
    assert old.ws.close_code == 4000
    reply, _ = await new.execute("1")
    assert reply["content"]["status"] == "ok"
    async with http.get(f"{server.url}api/kernels/{kernel}", headers=server.headers) as r:
        assert (await r.json())["connections"] == 1
    await new.close()


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_interrupt_by_rest_while_busy(http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool) -> None:
    client = await KernelClient.connect(http, server, kernel, v1=v1)
    msg_id = await client.request(
        "execute_request", {"code": "import time; print('sleeping', flush=True); time.sleep(30)"}
    )
    await client.next(lambda m: m["header"]["msg_type"] == "stream")  # the code is running
    start = time.monotonic()
    async with http.post(f"{server.url}api/kernels/{kernel}/interrupt", headers=server.headers) as r:
        assert r.status == 204
    reply, outputs = await client.collect(msg_id, timeout=10)
    assert time.monotonic() - start < 5
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    await client.close()


async def test_restart_clears_state(http: aiohttp.ClientSession, server: Server, kernel: str) -> None:
    client = await KernelClient.connect(http, server, kernel)
    await client.execute("x = 1")
    async with http.post(f"{server.url}api/kernels/{kernel}/restart", headers=server.headers) as r:
        assert r.status == 200 and (await r.json())["execution_state"] == "idle"
    reply, _ = await client.execute("x")
    assert reply["content"]["ename"] == "NameError"
    await client.close()


async def test_a_dead_kernel_is_restarted_and_clients_told(
    http: aiohttp.ClientSession, server: Server, kernel: str
) -> None:
    client = await KernelClient.connect(http, server, kernel)
    await client.request("execute_request", {"code": "import os; os._exit(1)"})
    status = await client.next(
        lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting", timeout=15
    )
    assert status["channel"] == "iopub"

    async def idle() -> bool:
        async with http.get(f"{server.url}api/kernels/{kernel}", headers=server.headers) as r:
            return bool((await r.json())["execution_state"] == "idle")

    await eventually(idle, "the restarted kernel's idle")
    reply, outputs = await client.execute("print('back')")
    assert stdout_of(outputs) == "back\n"
    await client.close()


async def test_without_autorestart_a_dead_kernel_stays_dead(http: aiohttp.ClientSession, root_dir: object) -> None:
    srv = start_server("--autorestart", "false", "--kernel-poll-interval", "0.1")
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        await client.request("execute_request", {"code": "import os; os._exit(3)"})
        await client.next(lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "dead")
        async with http.get(f"{srv.url}api/kernels/{kid}", headers=srv.headers) as r:
            model = await r.json()
        assert model["execution_state"] == "dead" and "code 3" in model["reason"]
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await KernelClient.connect(http, srv, kid)
        await client.close()
    finally:
        srv.stop()


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


async def test_a_client_that_never_reads_is_dropped_and_others_get_everything(http: aiohttp.ClientSession) -> None:
    # A flood the reader outpaces (24 MB at under 5 MB/s), beside a journal that gives it about two
    # seconds of slack for the hiccups of a busy machine: a reader slower than the kernel for the whole
    # flood falls out of any journal smaller than the flood, by design.  The stalled client runs out of
    # the journal after 8 MB and is dropped.
    journal = 8_000_000
    srv = start_server("--client-buffer-limit", "200000", "--journal-max-bytes", str(journal))
    stalled: socket.socket | None = None
    try:
        kid = await start_kernel(http, srv)
        baseline = rss_kib(srv.proc.pid, "VmRSS")
        stalled = raw_websocket(srv, kid, "stalled")
        reader = KernelClient(
            await http.ws_connect(
                f"{srv.ws_url}api/kernels/{kid}/channels?session_id=r", headers=srv.headers, max_msg_size=0
            ),
            "r",
        )
        reply, outputs = await reader.execute(
            "import time\nfor i in range(6000):\n    print(str(i).rjust(4000, '.'), flush=True)\n"
            "    i % 50 or time.sleep(0.04)",
            stall=30,
        )
        lines = stdout_of(outputs).splitlines()
        assert len(lines) == 6000 and lines[-1].endswith("5999")
        growth = rss_kib(srv.proc.pid, "VmHWM") - baseline
        # the journal and 10 MB: holding the 24 MB for the stalled client would take more than 32 MB
        assert growth < journal // 1024 + 10_000, f"grew {growth} KiB relaying 24 MB past a stalled client"

        async with asyncio.timeout(10):
            while True:
                async with http.get(f"{srv.url}api/kernels/{kid}", headers=srv.headers) as r:
                    if (await r.json())["connections"] == 1:
                        break
                await asyncio.sleep(0.05)
        assert await logged(srv, "dropping a WebSocket client")
        await reader.close()
    finally:
        if stalled is not None:
            stalled.close()
        srv.stop()


async def test_keepalive_pings(http: aiohttp.ClientSession) -> None:
    srv = start_server("--ws-ping-interval", "0.2")
    try:
        kid = await start_kernel(http, srv)
        ws = await http.ws_connect(f"{srv.ws_url}api/kernels/{kid}/channels", headers=srv.headers, autoping=False)
        msg = await ws.receive(timeout=5)
        while msg.type != aiohttp.WSMsgType.PING:
            msg = await ws.receive(timeout=5)
        await ws.pong(msg.data)
        await ws.close()
    finally:
        srv.stop()


async def test_oversized_websocket_message_closes_only_that_connection(http: aiohttp.ClientSession) -> None:
    srv = start_server("--ws-max-message-size", "10000")
    try:
        kid = await start_kernel(http, srv)
        big = await KernelClient.connect(http, srv, kid, v1=False)
        other = await KernelClient.connect(http, srv, kid)
        await big.ws.send_str("x" * 20000)
        await asyncio.wait_for(big.closed.wait(), 5)
        assert big.ws.close_code == 1009
        reply, _ = await other.execute("1")
        assert reply["content"]["status"] == "ok"
        await other.close()
    finally:
        srv.stop()


@pytest.mark.timeout(300)
async def test_many_connections_to_one_kernel(http: aiohttp.ClientSession) -> None:
    """400 clients that each use shell and control hold 1,200 ZeroMQ sockets, past ZeroMQ's
    default of 1,023 per context (a client's sockets open on first use, so each must send).
    A server of its own: 400 clients in the server's own event loop would measure the test."""
    server = start_server()
    try:
        kernel = await start_kernel(http, server)
        clients = await asyncio.gather(*(KernelClient.connect(http, server, kernel) for _ in range(400)))
        for c in clients:
            for channel in ("shell", "control"):
                await c.send(c.message("kernel_info_request", {}, channel=channel))
        # Each request's busy and idle go to all 400 clients (640,000 frames, all parsed by this
        # process): on a busy machine that is slow, so only a gap of 30 s in which no client gets
        # anything fails, as a stall.
        replies, read = [0] * len(clients), [0] * len(clients)
        quiet_since, before = time.monotonic(), 0
        while any(n < 2 for n in replies):
            for i, c in enumerate(clients):
                new, read[i] = c.seen[read[i] :], len(c.seen)
                replies[i] += sum(m["header"]["msg_type"] == "kernel_info_reply" for m in new)
            seen = sum(read)
            if seen != before:
                quiet_since, before = time.monotonic(), seen
            assert time.monotonic() - quiet_since < 30, f"stalled: {sum(replies)} of 800 replies, {seen} messages"
            await asyncio.sleep(0.2)
        last = clients[-1]
        while not last.messages.empty():  # the 640,000 frames are read: what follows is the new request's
            last.messages.get_nowait()
        reply, _ = await last.execute("print('still fine')", stall=30)
        assert reply["content"]["status"] == "ok"
        await asyncio.gather(*(c.close() for c in clients))
    finally:
        server.stop()
