"""Kernels whose channels are slow (a loaded machine, a tunnel to a remote host), as ipykernel
behind a forwarder on one channel that holds each new connection, or each chunk, for a while.

- stdin slow to connect: the kernel's ROUTER drops an input_request to a peer whose handshake is
  not done, so nothing may reach the kernel's shell before the stdin socket that shares its
  identity is connected;
- iopub lagging: stdin's input_request overtakes iopub's busy, and the request still counts as
  taken up (its duration, its timeout).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import KernelClient, Server, eventually, start_kernel, start_server, stdout_of

SLOW = {
    "slow-stdin": ("stdin", "connection", 1.0),
    "slower-stdin": ("stdin", "connection", 5.0),  # room for a test's next request on a busy machine
    "lagging-iopub": ("iopub", "chunk", 0.15),
}

WRAPPER = """
import json, os, socket, sys, threading, time

path = sys.argv[sys.argv.index("-f") + 1]
info = json.load(open(path))
tcp = info["transport"] == "tcp"


def address(port):
    return (info["ip"], port) if tcp else f"{info['ip']}-{port}"


def listener(port):
    sock = socket.socket(socket.AF_INET if tcp else socket.AF_UNIX)
    sock.bind(address(port))
    sock.listen(16)
    return sock


inner = info[PORT] + 1000 if not tcp else 0
if tcp:
    probe = listener(0)
    inner = probe.getsockname()[1]
    probe.close()
outer = listener(info[PORT])
info[PORT] = inner
with open(path + ".inner", "w") as f:
    json.dump(info, f)


def pipe(source, sink, lag=0):
    try:
        while data := source.recv(65536):
            time.sleep(lag)
            sink.sendall(data)
    except OSError:
        pass
    for s in (source, sink):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def held(client):
    time.sleep(DELAY if WHAT == "connection" else 0)
    for _ in range(3000):  # Portico may connect before ipykernel has bound its socket
        upstream = socket.socket(socket.AF_INET if tcp else socket.AF_UNIX)
        try:
            upstream.connect(address(inner))
            break
        except OSError:
            upstream.close()
            time.sleep(0.01)
    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
    pipe(upstream, client, DELAY if WHAT == "chunk" else 0)


def serve():
    while True:
        client, _ = outer.accept()
        threading.Thread(target=held, args=(client,), daemon=True).start()


threading.Thread(target=serve, daemon=True).start()
sys.argv[sys.argv.index("-f") + 1] = path + ".inner"
from ipykernel.kernelapp import launch_new_instance

launch_new_instance()
"""


def slow_kernels(share: Path) -> None:
    for name, (channel, what, delay) in SLOW.items():
        spec = share / "kernels" / name
        spec.mkdir(parents=True)
        settings = f"PORT, WHAT, DELAY = {channel + '_port'!r}, {what!r}, {delay}\n"
        (spec / "wrapper.py").write_text(settings + WRAPPER)
        argv = [sys.executable, str(spec / "wrapper.py"), "-f", "{connection_file}"]
        (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": name, "language": "python"}))


@pytest.fixture(scope="module", params=["ipc", "tcp"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    share = tmp_path_factory.mktemp("share")
    slow_kernels(share)
    srv = start_server("--kernel-transport", request.param, env={"JUPYTER_PATH": str(share)})
    yield srv
    srv.stop()


async def test_an_input_request_over_http_is_not_lost(http: aiohttp.ClientSession, server: Server) -> None:
    kid = await start_kernel(http, server, name="slow-stdin")
    url = f"{server.url}api/kernels/{kid}/execute"
    async with http.post(url, json={"code": "print('hello', input('who? '))"}, headers=server.headers) as r:
        assert r.status == 202
        request_url = server.url.rstrip("/") + (await r.json())["request_url"]

    async def asking() -> bool:
        async with http.get(request_url, headers=server.headers) as r:
            return r.status == 300

    await eventually(asking, "the input request")
    async with http.post(f"{server.url}api/kernels/{kid}/input", json={"input": "ada"}, headers=server.headers) as r:
        assert r.status == 201

    async def answered() -> bool:
        async with http.get(request_url, headers=server.headers) as r:
            return r.status == 200 and "hello ada" in (await r.json())["outputs"]

    await eventually(answered, "the output after the input")


@pytest.mark.parametrize("v1", [False, True], ids=["json", "v1"])
async def test_an_input_request_over_the_websocket_is_not_lost(
    http: aiohttp.ClientSession, server: Server, v1: bool
) -> None:
    kid = await start_kernel(http, server, name="slow-stdin")
    client = await KernelClient.connect(http, server, kid, v1=v1)
    try:
        code = "print('hello', input('who? '))"
        msg_id = await client.request("execute_request", {"code": code, "allow_stdin": True})
        prompt = await client.next(lambda m: m["channel"] == "stdin")
        assert prompt["header"]["msg_type"] == "input_request" and prompt["content"]["prompt"] == "who? "
        await client.send(client.message("input_reply", {"value": "ada"}, channel="stdin", parent=prompt["header"]))
        _, outputs = await client.collect(msg_id)
        assert stdout_of(outputs) == "hello ada\n"
    finally:
        await client.close()


async def test_an_input_request_before_the_busy_counts_as_running(http: aiohttp.ClientSession, server: Server) -> None:
    kid = await start_kernel(http, server, name="lagging-iopub")
    url, headers = f"{server.url}api/kernels/{kid}/execute", {**server.headers, "Accept": "application/x-ndjson"}
    events = []
    async with http.post(url, json={"code": "input('who? ')"}, headers=headers) as r:
        async for line in r.content:
            events.append(json.loads(line))
            if events[-1]["type"] == "input_request":
                answer = server.url.rstrip("/") + events[-1]["input_url"]
                async with http.post(answer, json={"input": "ada"}, headers=server.headers) as answered:
                    assert answered.status == 201
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["accepted", "running", "input_request"] and kinds[-1] == "done", kinds
    assert events[-1]["status"] == "ok" and events[-1]["duration"] is not None, events[-1]


async def test_a_request_cancelled_while_its_sockets_connect_never_runs(
    http: aiohttp.ClientSession, server: Server, tmp_path: Path
) -> None:
    kid = await start_kernel(http, server, name="slower-stdin")
    ran = tmp_path / "ran"
    url = f"{server.url}api/kernels/{kid}/execute"
    async with http.post(url, json={"code": f"open({str(ran)!r}, 'w')"}, headers=server.headers) as r:
        request_url = server.url.rstrip("/") + (await r.json())["request_url"]
    async with http.delete(request_url, headers=server.headers) as r:  # within the stdin hold
        assert r.status == 204, await r.text()
    async with http.post(url, json={"code": "'after'", "wait": True}, headers=server.headers) as r:
        assert r.status == 200 and "after" in (await r.json())["outputs"]
    async with http.get(request_url, headers=server.headers) as r:
        cancelled = await r.json()
    assert cancelled["status"] == "aborted" and cancelled["request_status"] == "complete", cancelled
    assert not ran.exists()
