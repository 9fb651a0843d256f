"""The remote tier: kernels on SSH hosts that the tests build in network namespaces (hosts.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from portico_testing import Server, start_server
from remote import engine as docker_engine_module
from remote.engine import Engine
from remote.hosts import Hosts, free_subnet, ssh_spec, why_not

LAUNCH_TIMEOUT = 8  # seconds: the failing kernelspecs' launch timeout
SECRETS = {"PORTICO_LOG_LEVEL": "info", "AWS_SECRET_ACCESS_KEY": "s3cr3t"}  # in Portico's environment only


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/remote/" in str(item.path):
            item.add_marker(pytest.mark.remote)


@pytest.fixture(scope="session")
def ssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    reason = why_not()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the remote tier must run")
        pytest.skip(reason)
    scratch = tmp_path_factory.mktemp("hosts")
    hosts = Hosts(scratch, str(os.getpid() % 100000), free_subnet())
    try:
        hosts.build(3)
        known = (hosts.home / ".ssh" / "known_hosts").read_text().splitlines()
        unknown = hosts.hosts[2]  # the third host's key is not in known_hosts
        (hosts.home / ".ssh" / "known_hosts").write_text(
            "".join(f"{line}\n" for line in known if not line.startswith(unknown.address + " "))
        )
        jupyter = scratch / "share" / "jupyter"
        two = [hosts.hosts[0].address, hosts.hosts[1].address]
        ssh_spec(jupyter, "ssh_hosts", two, sys.executable)
        ssh_spec(jupyter, "ssh_unknown_host", [unknown.address], sys.executable, LAUNCH_TIMEOUT)
        bare = scratch / "bare"  # an interpreter without ipykernel: a host that lacks it
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
        ssh_spec(jupyter, "ssh_no_ipykernel", [two[0]], str(bare / "bin" / "python"), LAUNCH_TIMEOUT)
        sleeper = ssh_spec(jupyter, "ssh_silent", [two[0]], sys.executable, LAUNCH_TIMEOUT)
        sleeper["argv"] = [
            sys.executable,
            "-c",
            "import time; time.sleep(600)",
            "{kernel_id}",
            "{response_address}",
            "{transport_encryption}",
        ]
        (jupyter / "kernels" / "ssh_silent" / "kernel.json").write_text(json.dumps(sleeper))
        hosts.jupyter_path = str(jupyter)
        yield hosts
    finally:
        hosts.teardown()


def remote_server(hosts: Hosts, root: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    full_env = {**hosts.env(), "JUPYTER_PATH": hosts.jupyter_path, **(env or {})}
    return start_server("--root-dir", str(root), "--kernel-poll-interval", "0.2", *args, env=full_env)


@pytest.fixture(scope="module")
def remote(ssh_hosts: Hosts, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Portico with the test hosts' kernelspecs, as its own process (gateway_provisioners reads
    its GP_* settings from the environment once, at import)."""
    srv = remote_server(ssh_hosts, tmp_path_factory.mktemp("root"))
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    reason = docker_engine_module.why_not()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; under CI the Docker tier must run")
        pytest.skip(reason)
    scratch = tmp_path_factory.mktemp("engine")
    engine = Engine(scratch, str(os.getpid() % 100000), free_subnet(202))
    try:
        engine.start()
        engine.load_image()
        jupyter = scratch / "share" / "jupyter"
        argv = [sys.executable, "-m", "gateway_provisioners.cli.docker_specapp", "install", "--prefix", str(scratch)]
        argv += ["--kernel-name", "docker_kernel", "--image-name", docker_engine_module.IMAGE]
        argv += ["--unauthorized-users", "nobody", "--launch-timeout", "60"]
        subprocess.run(argv, check=True, capture_output=True)
        engine.jupyter_path = str(jupyter)
        yield engine
    finally:
        engine.stop()


def docker_server(engine: Engine, root: Path, *args: str, env: dict[str, str] | None = None) -> Server:
    full_env = {**engine.env(), "JUPYTER_PATH": engine.jupyter_path, **(env or {})}
    return start_server("--root-dir", str(root), "--kernel-poll-interval", "0.2", *args, env=full_env)


@pytest.fixture(scope="module")
def dockerized(docker_engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Portico with the private engine's kernelspec, as its own process."""
    srv = docker_server(docker_engine, tmp_path_factory.mktemp("root"), env=SECRETS)
    yield srv
    srv.stop()
