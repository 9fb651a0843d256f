"""keep_kernels and the state directory: kernels outlive a restart of Portico on purpose, and
nothing a crashed Portico started is orphaned for good."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import KernelClient, Server, eventually, start_kernel, start_server, stdout_of

PID = "import os; print(os.getpid())"


@pytest.fixture(autouse=True)
def no_kept_kernel_outlives_the_test(tmp_path: Path) -> Iterator[None]:
    """Kept kernels outlive their server on purpose: a failing test must not leave one behind
    (this test's kernels: their connection files are in its state_dir, under tmp_path)."""
    yield
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if b"ipykernel" in cmdline and str(tmp_path).encode() in cmdline:
            os.kill(int(proc.name), signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def portico(state: Path, root: Path, *args: str) -> Server:
    return start_server("--root-dir", str(root), "--state-dir", str(state), "--kernel-poll-interval", "0.2", *args)


async def run(http: aiohttp.ClientSession, srv: Server, kid: str, code: str, session_id: str | None = None) -> str:
    client = await KernelClient.connect(http, srv, kid, session_id=session_id)
    try:
        reply, outputs = await client.execute(code)
        assert reply["content"]["status"] == "ok", reply["content"]
        return stdout_of(outputs)
    finally:
        await client.close()


async def listed(http: aiohttp.ClientSession, srv: Server) -> dict[str, str]:
    async with http.get(f"{srv.url}api/kernels", headers=srv.headers) as r:
        return {k["id"]: k["execution_state"] for k in await r.json()}


async def test_a_kept_kernel_outlives_sigterm_and_the_next_portico_reattaches(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state, root = tmp_path / "state", tmp_path
    first = portico(state, root, "--keep-kernels")
    try:
        kid = await start_kernel(http, first)
        away = await KernelClient.connect(http, first, kid, session_id="away", since="now")
        try:
            _, outputs = await away.execute(f"x = 41\n{PID}")
        finally:
            await away.close()
        pid, last = int(stdout_of(outputs)), max(m["metadata"]["portico_seq"] for m in outputs)
        # Output the session "away" never saw: the journal held it, and it is lost with the server.
        await run(http, first, kid, "print('while away')")
    finally:
        assert first.stop(signal.SIGTERM) == 0
    assert alive(pid), "the kept kernel ended with the server"
    second = portico(state, root, "--keep-kernels")
    try:
        assert await listed(http, second) == {kid: "idle"}
        assert (await run(http, second, kid, f"print(x + 1)\n{PID}")).split() == ["42", str(pid)]
        client = await KernelClient.connect(http, second, kid, session_id="away", since=last)
        try:
            gap = await client.next(lambda m: m["header"]["msg_type"] == "portico_journal_gap", timeout=10)
            assert gap["content"]["first"] == last + 1 and gap["content"]["last"] > last
        finally:
            await client.close()
        async with http.delete(f"{second.url}api/kernels/{kid}", headers=second.headers) as r:
            assert r.status == 204
        await eventually(lambda: not alive(pid), "the kernel ended by DELETE on the second server", 10)
    finally:
        second.stop()


async def test_a_kept_kernel_that_died_meanwhile_is_listed_dead(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    state, root = tmp_path / "state", tmp_path
    first = portico(state, root, "--keep-kernels")
    try:
        kid = await start_kernel(http, first)
        pid = int(await run(http, first, kid, PID))
    finally:
        first.stop(signal.SIGTERM)
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not alive(pid), "the kernel killed")
    second = portico(state, root, "--keep-kernels")
    try:
        assert await listed(http, second) == {kid: "dead"}
        async with http.delete(f"{second.url}api/kernels/{kid}", headers=second.headers) as r:
            assert r.status == 204
        assert await listed(http, second) == {}
    finally:
        second.stop()


async def test_without_keep_kernels_every_kernel_ends_with_the_server(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state, root = tmp_path / "state", tmp_path
    first = portico(state, root)
    try:
        kid = await start_kernel(http, first)
        pid = int(await run(http, first, kid, PID))
    finally:
        first.stop(signal.SIGTERM)
    await eventually(lambda: not alive(pid), "the kernel ended with the server", 10)
    second = portico(state, root)
    try:
        assert await listed(http, second) == {}
    finally:
        second.stop()


async def test_after_a_crash_the_next_start_reattaches_to_kept_kernels(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state, root = tmp_path / "state", tmp_path
    first = portico(state, root, "--keep-kernels")
    kid = await start_kernel(http, first)
    pid = int(await run(http, first, kid, f"y = 'kept'\n{PID}"))
    first.stop(signal.SIGKILL)
    await asyncio.sleep(1)
    assert alive(pid)
    second = portico(state, root, "--keep-kernels")
    try:
        assert await listed(http, second) == {kid: "idle"}
        assert (await run(http, second, kid, "print(y)")).strip() == "kept"
        async with http.delete(f"{second.url}api/kernels/{kid}", headers=second.headers) as r:
            assert r.status == 204
    finally:
        second.stop()
    await eventually(lambda: not alive(pid), "the kernel ended by DELETE on the second server", 10)


async def test_after_a_crash_without_keep_kernels_the_next_start_ends_what_is_left(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    state, root = tmp_path / "state", tmp_path
    first = portico(state, root)
    kid = await start_kernel(http, first)
    pid = int(await run(http, first, kid, PID))
    first.stop(signal.SIGKILL)
    second = portico(state, root)
    try:
        await eventually(lambda: not alive(pid), "the crashed server's kernel gone", 10)
        assert await listed(http, second) == {}
    finally:
        second.stop()


async def test_a_second_portico_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    state, root = tmp_path / "state", tmp_path
    first = portico(state, root)
    try:
        try:
            portico(state, root).stop()
        except RuntimeError as e:
            assert "in use by another Portico" in str(e)
        else:
            raise AssertionError("a second server started on a state_dir in use")
    finally:
        first.stop()
