from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, start_kernel, start_server


@pytest.fixture(scope="module")
def root_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "sub").mkdir()
    return root


@pytest.fixture(scope="module")
def server(root_dir: Path) -> Iterator[Server]:
    """One real Portico per test module, on an ephemeral port."""
    srv = start_server("--root-dir", str(root_dir), "--kernel-poll-interval", "0.2")
    yield srv
    srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture
async def kernel(http: aiohttp.ClientSession, server: Server) -> AsyncIterator[str]:
    kernel_id = await start_kernel(http, server)
    yield kernel_id
    async with http.delete(f"{server.url}api/kernels/{kernel_id}", headers=server.headers):
        pass
