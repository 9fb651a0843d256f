"""The pool behind a notebook: timeouts, concurrency, a full queue, dying kernels, growing and
shrinking; real servers and real kernels."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import TOKEN_HEADERS, Server, eventually, in_process, processes_with, start_server, write_notebook

CELLS = [
    "import json, os, signal, time\nSEEDED = 'yes'",
    "# GET /sleep\ntime.sleep(float(json.loads(REQUEST)['args']['s'][0]))\nprint('slept', SEEDED)",
    "# GET /pid\nprint(os.getpid())",
    "# GET /die\nos._exit(3)",
    "# GET /deaf\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(600)",
    "# GET /raise\n\n\nraise RuntimeError('on line 4')",
    "# GET /quick timeout=0.5\ntime.sleep(float(json.loads(REQUEST)['args']['s'][0]))\nprint('quick')",
]


def serve(tmp: Path, *options: str) -> Server:
    return start_server(
        "--notebook", write_notebook(tmp / "api.ipynb", CELLS), "--kernel-poll-interval", "0.2", *options
    )


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve(
        tmp_path_factory.mktemp("single"), "--notebook-pool-max", "1", "--notebook-timeout", "2", "--notebook-debug"
    )
    yield srv
    srv.stop()


async def get(http: aiohttp.ClientSession, server: Server, path: str) -> tuple[int, str, float]:
    started = time.monotonic()
    async with http.get(server.url + path, headers=server.headers) as r:
        return r.status, await r.text(), time.monotonic() - started


async def pool(http: aiohttp.ClientSession, server: Server) -> dict[str, int]:
    async with http.get(server.url + "api/status", headers=server.headers) as r:
        counts: dict[str, int] = (await r.json())["notebooks"][0]
        return counts


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    await eventually(check, "the pool's counts", timeout)


async def test_a_request_over_its_timeout_gets_504_and_the_kernel_serves_again(
    http: aiohttp.ClientSession, single: Server
) -> None:
    _, pid, _ = await get(http, single, "pid")
    status, body, elapsed = await get(http, single, "sleep?s=600")
    assert status == 504 and "ran over its 2 s timeout" in json.loads(body)["message"]
    assert elapsed < 2 + 2  # the configured timeout, with room for a loaded machine
    status, body, _ = await get(http, single, "sleep?s=0")
    assert (status, body) == (200, "slept yes\n")
    assert (await get(http, single, "pid"))[1] == pid  # the same kernel, interrupted, not replaced


async def test_debug_shows_the_traceback_with_the_cells_own_line_numbers(
    http: aiohttp.ClientSession, single: Server
) -> None:
    status, body, _ = await get(http, single, "raise")
    error = json.loads(body)
    assert status == 500 and error["evalue"] == "on line 4"
    plain = re.sub(r"\x1b\[[0-9;]*m", "", "".join(error["traceback"]))
    assert "line 4" in plain and "----> 4" in plain  # setting REQUEST added no line


async def test_an_annotation_timeout_overrides_the_setting(http: aiohttp.ClientSession, single: Server) -> None:
    status, body, _ = await get(http, single, "quick?s=5")
    assert status == 504 and "0.5 s timeout" in json.loads(body)["message"]
    assert (await get(http, single, "quick?s=0"))[:2] == (200, "quick\n")


async def test_a_dying_kernel_is_a_502_and_is_replaced_seeded(http: aiohttp.ClientSession, single: Server) -> None:
    _, pid, _ = await get(http, single, "pid")
    status, body, _ = await get(http, single, "die")
    assert status == 502 and json.loads(body)["reason"] == "Kernel Died"
    status, body, _ = await get(http, single, "sleep?s=0")
    assert (status, body) == (200, "slept yes\n")  # a fresh kernel, seeded
    assert (await get(http, single, "pid"))[1] != pid


async def test_a_kernel_deaf_to_interrupts_is_replaced(http: aiohttp.ClientSession, single: Server) -> None:
    _, pid, _ = await get(http, single, "pid")
    assert (await get(http, single, "deaf"))[0] == 504
    status, body, _ = await get(http, single, "sleep?s=0")  # waits for the replacement
    assert (status, body) == (200, "slept yes\n")
    assert (await get(http, single, "pid"))[1] != pid


@pytest.fixture(scope="module")
def four(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve(
        tmp_path_factory.mktemp("four"),
        "--notebook-pool-min",
        "4",
        "--notebook-pool-max",
        "4",
        "--notebook-queue-size",
        "2",
    )
    yield srv
    srv.stop()


async def test_four_kernels_serve_four_requests_at_once(http: aiohttp.ClientSession, four: Server) -> None:
    started = time.monotonic()
    results = await asyncio.gather(*(get(http, four, "sleep?s=2") for _ in range(4)))
    assert [r[:2] for r in results] == [(200, "slept yes\n")] * 4
    assert time.monotonic() - started < 3


async def test_a_full_queue_answers_503_at_once(http: aiohttp.ClientSession, four: Server) -> None:
    held = [asyncio.create_task(get(http, four, "sleep?s=3")) for _ in range(6)]  # 4 running, 2 queued

    async def full() -> bool:
        counts = await pool(http, four)
        return counts["idle"] == 0 and counts["queued"] == 2

    await until(full)
    started = time.monotonic()
    async with http.get(four.url + "sleep?s=0", headers=four.headers) as r:
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert "queued" in (await r.json())["message"]
    assert time.monotonic() - started < 1
    assert [r[0] for r in await asyncio.gather(*held)] == [200] * 6


@pytest.fixture(scope="module")
def elastic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = serve(
        tmp_path_factory.mktemp("elastic"),
        "--notebook-pool-min",
        "1",
        "--notebook-pool-max",
        "3",
        "--notebook-idle-timeout",
        "1",
    )
    yield srv
    srv.stop()


async def test_the_pool_grows_on_demand_and_shrinks_when_idle(http: aiohttp.ClientSession, elastic: Server) -> None:
    assert (await pool(http, elastic))["kernels"] == 1
    results = await asyncio.gather(*(get(http, elastic, "sleep?s=1") for _ in range(5)))
    assert [r[0] for r in results] == [200] * 5
    assert (await pool(http, elastic))["kernels"] == 3  # never beyond the maximum

    async def shrunk() -> bool:
        return (await pool(http, elastic))["kernels"] == 1

    await until(shrunk)
    assert (await get(http, elastic, "sleep?s=0"))[0] == 200


async def test_no_notebook_kernel_outlives_the_server(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    marker = f"MARKER={os.getpid()}-{id(tmp_path)}"
    server = start_server(
        "--notebook",
        write_notebook(tmp_path / "api.ipynb", CELLS),
        "--notebook-pool-min",
        "2",
        "--kernel-env-inherit",
        "MARKER",
        env={"MARKER": marker.split("=", 1)[1]},
    )
    busy = asyncio.create_task(get(http, server, "sleep?s=600"))
    assert len([p for p in processes_with(marker) if p != server.proc.pid]) == 2

    async def running() -> bool:
        return (await pool(http, server))["idle"] == 1

    await until(running)
    assert server.stop() == 0
    status, body, _ = await busy
    assert status == 503 and "shutting down" in body  # told, not cut off
    assert processes_with(marker) == []


async def test_a_shutdown_during_a_timed_out_requests_recovery_ends_its_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request over its timeout leaves its kernel being interrupted; a shutdown at that moment used to
    leave that kernel running (its disposal was a task the shutdown cancelled)."""
    marker = f"{os.getpid()}-{id(tmp_path)}"
    monkeypatch.setenv("MARKER", marker)
    notebook = write_notebook(tmp_path / "api.ipynb", ["# GET /slow timeout=0.3\nimport time\ntime.sleep(60)"])
    async with in_process(
        root_dir=str(tmp_path), notebook=[notebook], notebook_pool_max=1, kernel_env_inherit=["PATH", "MARKER"]
    ) as client:
        async with client.get("/slow", headers=TOKEN_HEADERS) as r:
            assert r.status == 504
        assert len(processes_with(f"MARKER={marker}")) == 1
    assert processes_with(f"MARKER={marker}") == []
