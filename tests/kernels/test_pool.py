"""The warm pool and the seed notebook, with real kernels."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import nbformat
import pytest

from portico_testing import KernelClient, LocalServer, Server, eventually, logged, serving, start_kernel, stdout_of


@pytest.fixture(scope="module")
def seed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# setup"),
        nbformat.v4.new_code_cell("seeded = 40"),
        nbformat.v4.new_code_cell("seeded += 2"),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path_factory.mktemp("seed") / "seed.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
async def pooled(seed: Path, root_dir: Path) -> AsyncIterator[LocalServer]:
    async with serving(pool_size=2, seed=str(seed), root_dir=str(root_dir)) as srv:
        yield srv


async def pool_count(http: aiohttp.ClientSession, srv: Server) -> float:
    async with http.get(srv.url + "metrics", headers=srv.headers) as r:
        for line in (await r.text()).splitlines():
            if line.startswith('portico_pool_kernels{kernelspec="python3"}'):
                return float(line.split()[-1])
    raise AssertionError("no pool gauge")


async def wait_pool(http: aiohttp.ClientSession, srv: Server, n: int) -> None:
    async def filled() -> bool:
        return await pool_count(http, srv) >= n

    await eventually(filled, f"{n} warm kernels", 60)


async def run(http: aiohttp.ClientSession, srv: Server, kid: str, code: str) -> str:
    client = await KernelClient.connect(http, srv, kid)
    _, outputs = await client.execute(code)
    await client.close()
    return stdout_of(outputs)


async def test_warm_kernels_are_handed_out_seeded_and_refilled(http: aiohttp.ClientSession, pooled: Server) -> None:
    await wait_pool(http, pooled, 2)
    kid = await start_kernel(http, pooled)
    assert await logged(pooled, f"kernel {kid} started (python3, from the warm pool)")
    client = await KernelClient.connect(http, pooled, kid)
    reply, outputs = await client.execute("print(seeded)")
    await client.close()
    assert stdout_of(outputs) == "42\n"
    assert reply["content"]["execution_count"] == 1, "seeding does not count as an execution"
    await wait_pool(http, pooled, 2)  # refilled in the background
    # re-seeded after a restart
    async with http.post(f"{pooled.url}api/kernels/{kid}/restart", headers=pooled.headers) as r:
        assert r.status == 200
    assert await run(http, pooled, kid, "print(seeded)") == "42\n"


async def test_requests_the_pool_cannot_serve_start_cold(
    http: aiohttp.ClientSession, pooled: Server, root_dir: Path
) -> None:
    await wait_pool(http, pooled, 2)
    with_env = await start_kernel(http, pooled, env={"KERNEL_X": "1"})
    elsewhere = await start_kernel(http, pooled, path="sub/nb.ipynb")
    assert await logged(pooled, f"kernel {with_env} started (python3, cold)")
    assert await logged(pooled, f"kernel {elsewhere} started (python3, cold)")
    assert await run(http, pooled, with_env, "import os; print(os.environ['KERNEL_X'], seeded)") == "1 42\n"
    assert await run(http, pooled, elsewhere, "import os; print(os.getcwd())") == f"{root_dir / 'sub'}\n"
    assert await pool_count(http, pooled) == 2


async def test_a_client_chosen_id_applies_to_a_warm_kernel(http: aiohttp.ClientSession, pooled: Server) -> None:
    await wait_pool(http, pooled, 1)
    kid = "9e2c1b0a-4b7e-4a53-8f0c-2a1d3e4f5a6b"
    assert await start_kernel(http, pooled, kernel_id=kid) == kid
    assert await run(http, pooled, kid, "print(seeded)") == "42\n"


async def test_a_failing_seed_fails_the_start_clearly(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("raise ValueError('bad seed')")]
    nbformat.write(nb, tmp_path / "bad.ipynb")
    async with serving(seed=str(tmp_path / "bad.ipynb")) as srv:
        async with http.post(srv.url + "api/kernels", json={}, headers=srv.headers) as r:
            body = await r.json()
        assert r.status == 503 and "code cell 1: ValueError: bad seed" in body["message"]
        async with http.get(srv.url + "api/kernels", headers=srv.headers) as r:
            assert await r.json() == []


async def test_twenty_simultaneous_creates_with_an_empty_pool(http: aiohttp.ClientSession, root_dir: Path) -> None:
    async with serving(root_dir=str(root_dir)) as srv:
        ids = await asyncio.gather(*(start_kernel(http, srv) for _ in range(20)))
        assert len(set(ids)) == 20
        outputs = await asyncio.gather(*(run(http, srv, kid, "print('ok')") for kid in ids))
        assert outputs == ["ok\n"] * 20


async def test_the_pool_grows_with_demand_and_shrinks_when_idle(http: aiohttp.ClientSession, root_dir: Path) -> None:
    async with serving(root_dir=str(root_dir), pool_size=1, pool_max=4, pool_idle_timeout=1.0) as srv:
        await wait_pool(http, srv, 1)
        first = await start_kernel(http, srv)
        assert await logged(srv, f"kernel {first} started (python3, from the warm pool)")
        # three takes at once: at most one finds the refilled kernel, the others double its target twice
        await asyncio.gather(*(start_kernel(http, srv) for _ in range(3)))
        assert await logged(srv, "warm pool: python3 grows to 4 kernels")
        await wait_pool(http, srv, 4)

        async def back_to_one() -> bool:
            return await pool_count(http, srv) == 1

        await eventually(back_to_one, "the idle pool to shrink back to pool_size", 60)
        assert await logged(srv, "warm pool: python3 idle, shrinks to 2 kernels")
        assert await logged(srv, "warm pool: python3 idle, shrinks to 1 kernels")
