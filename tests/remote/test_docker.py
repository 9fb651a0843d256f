"""Kernels in containers of a private Docker engine (gateway_provisioners' docker-provisioner,
through Portico's fixed one), from an image built here without a registry."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from pathlib import Path

import aiohttp
import pytest

from portico_testing import Server, eventually, start_kernel, stdout_of
from remote.conftest import docker_server
from remote.engine import Engine
from remote.hosts import netns_of
from remote.kernels import GONE_WITHIN, connected, interrupted, where

ENV = "import os; print(sorted(os.environ.items()))"

# The first test waits for the engine and, on a new machine, for the kernel image to be built.
pytestmark = pytest.mark.timeout(600)


async def no_container(engine: Engine, kernel_id: str) -> None:
    await eventually(lambda: not engine.containers(kernel_id), f"kernel {kernel_id}'s container gone", GONE_WITHIN)


async def test_a_kernel_in_a_container_runs_there_is_interrupted_and_is_gone_after_delete(
    dockerized: Server, http: aiohttp.ClientSession, docker_engine: Engine
) -> None:
    kid = await start_kernel(http, dockerized, name="docker_kernel")
    assert len(docker_engine.containers(kid)) == 1
    async with connected(http, dockerized, kid) as client:
        host, netns, _, kernel_env_id = await where(client)
        assert host != os.uname().nodename and kid in host  # the container's hostname: <user>-<kernel id>
        assert netns != netns_of(dockerized.proc.pid)
        assert kernel_env_id == kid
        assert await interrupted(http, dockerized, kid, client) == "KeyboardInterrupt"
    async with http.delete(f"{dockerized.url}api/kernels/{kid}", headers=dockerized.headers) as r:
        assert r.status == 204
    await no_container(docker_engine, kid)


async def test_no_secret_of_portico_reaches_the_container(
    dockerized: Server, http: aiohttp.ClientSession, docker_engine: Engine
) -> None:
    kid = await start_kernel(http, dockerized, name="docker_kernel")
    async with connected(http, dockerized, kid) as client:
        _, outputs = await client.execute(ENV)
    seen = stdout_of(outputs) + docker_engine.docker(
        "inspect", "--format", "{{json .Config.Env}}", *docker_engine.containers(kid)
    )
    assert "PORTICO_" not in seen and "s3cr3t" not in seen and "AWS_SECRET" not in seen
    assert dockerized.token not in seen
    async with http.delete(f"{dockerized.url}api/kernels/{kid}", headers=dockerized.headers) as r:
        assert r.status == 204
    await no_container(docker_engine, kid)


async def test_a_restarted_container_kernel_keeps_open_and_new_websockets_working(
    dockerized: Server, http: aiohttp.ClientSession, docker_engine: Engine
) -> None:
    kid = await start_kernel(http, dockerized, name="docker_kernel")
    (old,) = docker_engine.containers(kid)
    async with connected(http, dockerized, kid) as before:
        await before.execute("x = 42")
        async with http.post(f"{dockerized.url}api/kernels/{kid}/restart", headers=dockerized.headers) as r:
            assert r.status == 200, await r.text()
        _, outputs = await before.execute("print('x' in dir())")
        assert stdout_of(outputs).strip() == "False"
        async with connected(http, dockerized, kid) as after:
            _, outputs = await after.execute("print(6 * 7)")
            assert stdout_of(outputs).strip() == "42"
    assert docker_engine.containers(kid) != [old]
    async with http.delete(f"{dockerized.url}api/kernels/{kid}", headers=dockerized.headers) as r:
        assert r.status == 204
    await no_container(docker_engine, kid)


async def test_container_kernels_started_and_deleted_at_once_or_while_pending_leave_nothing(
    dockerized: Server, http: aiohttp.ClientSession, docker_engine: Engine
) -> None:
    ids = []
    for _ in range(5):
        kid = await start_kernel(http, dockerized, name="docker_kernel")
        async with http.delete(f"{dockerized.url}api/kernels/{kid}", headers=dockerized.headers) as r:
            assert r.status == 204
        ids.append(kid)
    pending = str(uuid.uuid4())
    post = asyncio.ensure_future(
        http.post(
            f"{dockerized.url}api/kernels",
            json={"name": "docker_kernel", "kernel_id": pending},
            headers=dockerized.headers,
        )
    )
    await eventually(lambda: bool(docker_engine.containers(pending)), "the container created")
    async with http.delete(f"{dockerized.url}api/kernels/{pending}", headers=dockerized.headers) as r:
        assert r.status == 204
    async with await post as r:
        assert r.status == 404
    for kid in [*ids, pending]:
        await no_container(docker_engine, kid)


async def test_sigterm_to_portico_ends_its_container_kernels(
    docker_engine: Engine, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    srv = docker_server(docker_engine, tmp_path)
    try:
        ids = [await start_kernel(http, srv, name="docker_kernel") for _ in range(2)]
        assert all(docker_engine.containers(kid) for kid in ids)
    finally:
        assert srv.stop(signal.SIGTERM) == 0
    for kid in ids:
        await no_container(docker_engine, kid)
