"""Kernels on SSH hosts (gateway_provisioners' distributed provisioner, through Portico's fixed
one): real sshd's in network namespaces with hostnames of their own, real remote ipykernels."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import zmq
import zmq.asyncio
from jupyter_client.session import Session

from portico_testing import KernelClient, Server, eventually, processes_with, start_kernel, stdout_of
from remote.conftest import LAUNCH_TIMEOUT, remote_server
from remote.hosts import Hosts, netns_of
from remote.kernels import GONE_WITHIN, all_gone, connected, interrupted, kernel_pids, where


async def test_a_kernel_on_an_ssh_host_runs_there_and_is_interrupted_and_gone_after_delete(
    remote: Server, http: aiohttp.ClientSession
) -> None:
    kid = await start_kernel(http, remote, name="ssh_hosts")
    async with connected(http, remote, kid) as client:
        host, netns, pid, kernel_env_id = await where(client)
        assert host.startswith("kh") and host != os.uname().nodename
        assert netns != netns_of(remote.proc.pid)
        assert kernel_env_id == kid  # the id Portico shows is the one the host was given
        assert await interrupted(http, remote, kid, client) == "KeyboardInterrupt"
    assert pid in kernel_pids(kid)
    async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 204
    await all_gone(kid)


async def test_a_restart_moves_the_kernel_and_open_and_new_websockets_work(
    remote: Server, http: aiohttp.ClientSession
) -> None:
    kid = await start_kernel(http, remote, name="ssh_hosts")
    async with connected(http, remote, kid) as before:
        host, _, old_pid, _ = await where(before)
        reply, _ = await before.execute("x = 42")
        async with http.post(f"{remote.url}api/kernels/{kid}/restart", headers=remote.headers) as r:
            assert r.status == 200, await r.text()
        new_host, _, new_pid, _ = await where(before)  # the open WebSocket reaches the new kernel
        assert new_pid != old_pid
        assert new_host != host  # round robin over two hosts: new host, new ports
        async with connected(http, remote, kid) as after:
            reply, outputs = await after.execute("print('x' in dir())")
            assert stdout_of(outputs).strip() == "False"
            reply, outputs = await after.execute("print(6 * 7)")
            assert stdout_of(outputs).strip() == "42"
    await eventually(
        lambda: not processes_with(f"KERNEL_ID={kid}") or old_pid not in kernel_pids(kid),
        "the old kernel gone",
        GONE_WITHIN,
    )
    async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 204
    await all_gone(kid)


async def test_kernels_started_and_deleted_at_once_leave_nothing(remote: Server, http: aiohttp.ClientSession) -> None:
    ids = []
    for _ in range(5):
        kid = await start_kernel(http, remote, name="ssh_hosts")
        async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
            assert r.status == 204
        ids.append(kid)
    for kid in ids:
        await all_gone(kid)


async def test_a_delete_while_the_post_is_pending_ends_that_kernel(remote: Server, http: aiohttp.ClientSession) -> None:
    kid = str(uuid.uuid4())
    post = asyncio.ensure_future(
        http.post(f"{remote.url}api/kernels", json={"name": "ssh_hosts", "kernel_id": kid}, headers=remote.headers)
    )
    await eventually(lambda: bool(kernel_pids(kid)), "the kernel launched on its host")
    async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 204
    async with await post as r:
        assert r.status == 404
        assert "shut down while it started" in (await r.json())["message"]
    await all_gone(kid)
    async with http.get(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 404


async def test_sigterm_to_portico_ends_its_remote_kernels(
    ssh_hosts: Hosts, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    srv = remote_server(ssh_hosts, tmp_path)
    try:
        ids = [await start_kernel(http, srv, name="ssh_hosts") for _ in range(2)]
        assert all(kernel_pids(kid) for kid in ids)
    finally:
        assert srv.stop(signal.SIGTERM) == 0
    for kid in ids:
        await all_gone(kid)


def connection_file(kernel_id: str) -> dict[str, Any]:
    """The connection file the remote launcher wrote on its host (the hosts share /tmp)."""
    (path,) = glob.glob(f"/tmp/kernel-{kernel_id}_*.json")
    return json.loads(Path(path).read_text())


async def kernel_info_over_zmq(info: dict[str, Any], curve: bool, wait: float) -> dict[str, Any] | None:
    context = zmq.asyncio.Context()
    sock = context.socket(zmq.DEALER)
    sock.linger = 0
    if curve:
        public, secret = info["curve_publickey"].encode(), info["curve_secretkey"].encode()
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = public, public, secret
    sock.connect(f"tcp://{info['ip']}:{info['shell_port']}")
    session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
    try:
        session.send(sock, "kernel_info_request", {})
        if not await sock.poll(wait * 1000):
            return None
        _, frames = session.feed_identities(await sock.recv_multipart())
        return session.deserialize(frames)
    finally:
        sock.close()
        context.term()


async def test_remote_kernels_speak_curvezmq_only(
    remote: Server, http: aiohttp.ClientSession, ssh_hosts: Hosts
) -> None:
    kid = await start_kernel(http, remote, name="ssh_hosts")
    async with connected(http, remote, kid) as client:
        _, netns, _, _ = await where(client)
    info = connection_file(kid)
    assert info["ip"] == "0.0.0.0"  # listening on every interface of its host
    address = next(h.address for h in ssh_hosts.hosts if h.sshd is not None and netns_of(h.sshd.pid) == netns)
    info["ip"] = address
    assert await kernel_info_over_zmq(info, curve=True, wait=10) is not None  # the control: keys work
    assert await kernel_info_over_zmq(info, curve=False, wait=2) is None  # the right HMAC key, no CURVE keys
    async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 204


async def failed_start(http: aiohttp.ClientSession, server: Server, name: str) -> tuple[int, str, float]:
    began = time.monotonic()
    async with http.post(f"{server.url}api/kernels", json={"name": name}, headers=server.headers) as r:
        status, body = r.status, await r.json()
    took = time.monotonic() - began
    async with http.get(f"{server.url}api", headers=server.headers) as r:
        assert r.status == 200  # the server goes on serving
    return status, body["message"], took


async def test_a_host_whose_key_is_unknown_is_refused(
    remote: Server, http: aiohttp.ClientSession, ssh_hosts: Hosts
) -> None:
    status, message, took = await failed_start(http, remote, "ssh_unknown_host")
    assert status == 503, message
    assert ssh_hosts.hosts[2].address in message and "known_hosts" in message
    assert took < LAUNCH_TIMEOUT


async def test_a_wrong_ssh_port_is_refused(ssh_hosts: Hosts, tmp_path: Path, http: aiohttp.ClientSession) -> None:
    srv = remote_server(ssh_hosts, tmp_path, env={"GP_SSH_PORT": "2"})
    try:
        status, message, took = await failed_start(http, srv, "ssh_hosts")
    finally:
        srv.stop()
    assert status == 503, message
    assert ":2 " in message and "refused" in message.lower()
    assert took < LAUNCH_TIMEOUT


@pytest.mark.parametrize(("name", "says"), [("ssh_no_ipykernel", "No module named"), ("ssh_silent", "")])
async def test_a_kernel_that_never_reports_fails_within_the_launch_timeout_naming_its_log(
    remote: Server, http: aiohttp.ClientSession, ssh_hosts: Hosts, name: str, says: str
) -> None:
    status, message, took = await failed_start(http, remote, name)
    assert status == 503, message
    host = ssh_hosts.hosts[0].address
    assert host in message and f"{ssh_hosts.logs}/kernel-" in message, message
    assert says in message
    assert took < LAUNCH_TIMEOUT + 5
    logs = sorted(ssh_hosts.logs.glob("kernel-*.log"), key=os.path.getmtime)
    kid = logs[-1].stem.removeprefix("kernel-")
    await all_gone(kid)


async def rtt_medians(client: KernelClient, n: int = 30) -> float:
    times = []
    for _ in range(n):
        began = time.perf_counter()
        await client.execute("1+1")
        times.append(time.perf_counter() - began)
    return sorted(times)[n // 2]


@pytest.mark.fault  # timings: in the serial tier, beside no other test
async def test_remote_starts_never_stall_the_server_nor_slow_its_local_kernels(
    ssh_hosts: Hosts, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    srv = remote_server(ssh_hosts, tmp_path, "--kernel-poll-interval", "1")  # the default
    twin = remote_server(ssh_hosts, tmp_path, "--kernel-poll-interval", "1")  # never has a remote kernel
    try:
        local = await start_kernel(http, srv)
        waits: list[float] = []

        async def three_starts() -> None:  # one after another: the hosts share this machine's 2 cores
            for _ in range(3):
                await start_kernel(http, srv, name="ssh_hosts")

        starting = asyncio.ensure_future(three_starts())
        while not starting.done():
            began = time.perf_counter()
            async with http.get(f"{srv.url}api", headers=srv.headers) as r:
                assert r.status == 200
            waits.append(time.perf_counter() - began)
            await asyncio.sleep(0.01)
        await starting
        # The local kernel's round trip beside three remote kernels, against the same on a twin
        # Portico without any, in alternate batches: the machine's drift falls on both alike.
        mine, theirs = [], []
        async with (
            connected(http, srv, local) as client,
            connected(http, twin, await start_kernel(http, twin)) as other,
        ):
            await rtt_medians(client, 10), await rtt_medians(other, 10)  # warm
            for _ in range(4):
                mine.append(await rtt_medians(client))
                theirs.append(await rtt_medians(other))
        with_remote, without = min(mine), min(theirs)
        print(f"GET /api during 3 remote starts: {len(waits)} samples, max {max(waits) * 1000:.1f} ms; local rtt "
              f"{with_remote * 1000:.2f} ms beside remote kernels, {without * 1000:.2f} ms without")  # fmt: skip
        assert max(waits) <= 0.050
        assert with_remote <= 1.2 * without
    finally:
        srv.stop()
        twin.stop()
