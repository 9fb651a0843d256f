from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from portico_testing import LocalServer, Server, serving, start_kernel, start_server


@pytest.fixture(scope="module")
def root_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    (root / "sub").mkdir()
    return root


@pytest.fixture
async def server(root_dir: Path) -> AsyncIterator[LocalServer]:
    """Portico for one test, in-process on a real socket and an ephemeral port (a test that needs
    the command line, signals or a stalled server starts its own with start_server)."""
    async with serving(root_dir=str(root_dir), kernel_poll_interval=0.2) as srv:
        yield srv


@pytest.fixture(scope="module")
def subprocess_server(root_dir: Path) -> Iterator[Server]:
    """Portico as its own process, for a synchronous test whose client is a blocking program
    (node, a README example): an in-process server would wait on the blocked event loop."""
    srv = start_server("--root-dir", str(root_dir))
    yield srv
    srv.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


@pytest.fixture
async def kernel(http: aiohttp.ClientSession, server: LocalServer) -> AsyncIterator[str]:
    kernel_id = await start_kernel(http, server)
    yield kernel_id
    async with http.delete(f"{server.url}api/kernels/{kernel_id}", headers=server.headers):
        pass
