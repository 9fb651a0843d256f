"""Remote kernels over SSH, beyond their start and end: kept across a restart of Portico, ended
after its crash, alive without their launcher's helper, restarted when killed, through tunnels."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from portico_testing import Server, eventually, processes_with, start_kernel, stdout_of
from remote.conftest import remote_server
from remote.hosts import Hosts
from remote.kernels import GONE_WITHIN, all_gone, connected, interrupted, kernel_pids, where


async def test_a_kept_remote_kernel_outlives_sigterm_and_the_next_portico_reattaches(
    ssh_hosts: Hosts, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    keep = ("--state-dir", str(tmp_path / "state"), "--keep-kernels")
    first = remote_server(ssh_hosts, tmp_path, *keep)
    try:
        kid = await start_kernel(http, first, name="ssh_hosts")
        async with connected(http, first, kid) as client:
            _, _, pid, _ = await where(client)
            await client.execute("x = 41")
    finally:
        assert first.stop(signal.SIGTERM) == 0
    assert pid in kernel_pids(kid)
    second = remote_server(ssh_hosts, tmp_path, *keep)
    try:
        async with http.get(f"{second.url}api/kernels", headers=second.headers) as r:
            assert [k["id"] for k in await r.json()] == [kid]
        async with connected(http, second, kid) as client:
            _, outputs = await client.execute("print(x + 1)")
            assert stdout_of(outputs).strip() == "42"
            assert (await where(client))[2] == pid
        async with http.delete(f"{second.url}api/kernels/{kid}", headers=second.headers) as r:
            assert r.status == 204
    finally:
        second.stop()
    await all_gone(kid)


async def test_after_a_crash_the_next_portico_ends_the_remote_kernels_it_left(
    ssh_hosts: Hosts, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state = ("--state-dir", str(tmp_path / "state"))
    first = remote_server(ssh_hosts, tmp_path, *state)
    kid = await start_kernel(http, first, name="ssh_hosts")
    first.stop(signal.SIGKILL)
    await asyncio.sleep(1)
    assert kernel_pids(kid), "a remote kernel has no parent poller: the crash left it running"
    second = remote_server(ssh_hosts, tmp_path, *state)
    try:
        await all_gone(kid)
        async with http.get(f"{second.url}api/kernels", headers=second.headers) as r:
            assert await r.json() == []
    finally:
        second.stop()


async def test_a_remote_kernel_whose_launcher_helper_died_is_not_taken_for_dead_and_still_interrupts(
    remote: Server, http: aiohttp.ClientSession
) -> None:
    kid = await start_kernel(http, remote, name="ssh_hosts")
    async with connected(http, remote, kid) as client:
        _, _, pid, _ = await where(client)
        helpers = [p for p in kernel_pids(kid) if p != pid]
        assert helpers, "the launcher's helper process"
        for helper in helpers:
            os.kill(helper, signal.SIGKILL)
        await asyncio.sleep(2)  # ten polls (kernel_poll_interval 0.2 s)
        assert (await where(client))[2] == pid  # the same kernel: not restarted
        assert await interrupted(http, remote, kid, client) == "KeyboardInterrupt"  # over SSH, the helper being gone
    async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 204
    await all_gone(kid)


async def test_a_killed_remote_kernel_is_seen_and_restarted(remote: Server, http: aiohttp.ClientSession) -> None:
    kid = await start_kernel(http, remote, name="ssh_hosts")
    async with connected(http, remote, kid) as client:
        _, _, pid, _ = await where(client)
        os.kill(pid, signal.SIGKILL)
        await client.next(
            lambda m: m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "restarting",
            timeout=GONE_WITHIN,
        )
        assert (await where(client))[2] != pid
    async with http.delete(f"{remote.url}api/kernels/{kid}", headers=remote.headers) as r:
        assert r.status == 204
    await all_gone(kid)


def ssh_wrapper(hosts: Hosts, directory: Path) -> Path:
    """An `ssh` first on PATH that uses the test hosts' key and known_hosts: tunnels run the
    system ssh, which takes ~ from the passwd entry, not from HOME."""
    directory.mkdir()
    config = directory / "ssh_config"
    config.write_text(
        f"Host *\n  User root\n  IdentityFile {hosts.home / '.ssh' / 'id_ed25519'}\n"
        f"  UserKnownHostsFile {hosts.home / '.ssh' / 'known_hosts'}\n  StrictHostKeyChecking yes\n  BatchMode yes\n"
    )
    wrapper = directory / "ssh"
    wrapper.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
    wrapper.chmod(0o755)
    return directory


async def test_a_kernel_through_ssh_tunnels_works_and_its_tunnels_end_with_it(
    ssh_hosts: Hosts, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    bin_dir = ssh_wrapper(ssh_hosts, tmp_path / "bin")
    env = {"GP_ENABLE_TUNNELING": "true", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    srv = remote_server(ssh_hosts, tmp_path, env=env)
    try:
        kid = await start_kernel(http, srv, name="ssh_hosts")
        tunnels = processes_with("-L", "cmdline")  # the ssh -L of each channel
        assert len(tunnels) >= 5, "a tunnel per channel"
        async with connected(http, srv, kid) as client:
            host, _, pid, _ = await where(client)
            assert host.startswith("kh")
        async with http.delete(f"{srv.url}api/kernels/{kid}", headers=srv.headers) as r:
            assert r.status == 204
        await all_gone(kid)
        await eventually(lambda: not set(tunnels) & set(processes_with("-L", "cmdline")), "the tunnels gone")
    finally:
        srv.stop()
