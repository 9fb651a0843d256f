"""--reload: a saved notebook is served by freshly seeded kernels; no request fails across the switch."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, eventually, logged, serving, write_notebook


def version(n: int, extra: list[str] | None = None) -> list[str]:
    return [
        f"import time\nVERSION = {n}",
        "# GET /version\nprint(VERSION)",
        "# GET /slow\ntime.sleep(1)\nprint(VERSION)",
        *(extra or []),
    ]


def save(path: Path, cells: list[str]) -> None:
    """As an editor does: a new file renamed over the old one."""
    write_notebook(path.with_suffix(".tmp"), cells)
    os.replace(path.with_suffix(".tmp"), path)


@pytest.mark.parametrize("watch", ["events", "polling"])
async def test_a_saved_change_is_served_and_no_request_fails(
    http: aiohttp.ClientSession, tmp_path: Path, watch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With file system events (watchfiles), and without them: watchfiles made unimportable
    stands in for a platform that has none, and Portico looks at the file's stamp instead."""
    if watch == "polling":
        monkeypatch.setitem(sys.modules, "watchfiles", None)  # import watchfiles raises ImportError
    notebook = tmp_path / "api.ipynb"
    write_notebook(notebook, version(1))
    async with serving(notebook=[str(notebook)], reload=True, notebook_pool_max=2) as server:
        await _exercise(http, server, notebook)
    fallback = [line for line in server.stderr if "no file system events" in line]
    assert bool(fallback) == (watch == "polling"), fallback


async def get(http: aiohttp.ClientSession, server: Server, path: str) -> tuple[int, str]:
    async with http.get(server.url + path, headers=server.headers) as r:
        return r.status, await r.text()


async def _exercise(http: aiohttp.ClientSession, server: Server, notebook: Path) -> None:
    assert await get(http, server, "version") == (200, "1\n")
    stop = asyncio.Event()
    answers: list[tuple[int, str]] = []

    async def keep_asking() -> None:
        while not stop.is_set():
            answers.append(await get(http, server, "version"))

    askers = [asyncio.create_task(keep_asking()) for _ in range(3)]
    slow = asyncio.create_task(get(http, server, "slow"))  # runs across the switch, on version 1
    await asyncio.sleep(0.1)
    save(notebook, version(2, ["# GET /new\nprint('new route')"]))

    async def reloaded() -> bool:
        return await get(http, server, "version") == (200, "2\n")

    await eventually(reloaded, "version 2 served")
    assert await get(http, server, "new") == (200, "new route\n")
    stop.set()
    await asyncio.gather(*askers)
    assert await slow == (200, "1\n")
    assert {status for status, _ in answers} == {200}
    assert {body for _, body in answers} <= {"1\n", "2\n"}

    save(notebook, ["# GET /broken/:\n1"])  # a broken save keeps the last good version
    assert await logged(server, "still serving the previous version")
    assert await get(http, server, "version") == (200, "2\n")
