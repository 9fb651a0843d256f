"""Docker Swarm on one node: a kernel as a swarm service task, through Portico's fixed
docker-swarm-provisioner.  Task addresses live on the swarm's overlay network, which this
machine cannot reach, so Portico runs where Enterprise Gateway's deployments run it: in a
container on that (attachable) overlay, with this checkout, its venv and its interpreter
mounted read-only; the client runs beside it in the same container (swarm_client.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from portico_testing import processes_with
from remote import engine as engines
from remote.engine import Engine
from remote.hosts import free_subnet

ROOT = Path(__file__).parents[2]
TOKEN = "swarm-test-token"
GONE_WITHIN = 15  # seconds: a removed service's task gets SIGTERM and a grace period (tini: about 6 s)


@pytest.fixture(scope="module")
def swarm(docker_engine: Engine) -> Iterator[tuple[Engine, str]]:
    engine = docker_engine
    overlay = f"pko{engine.tag}"
    container = f"portico-{engine.tag}"
    engine.docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        engine.docker("network", "create", "-d", "overlay", "--attachable",
                      "--subnet", f"10.203.{free_subnet(203)}.0/24", overlay)  # fmt: skip
        scratch = Path(engine.jupyter_path).parents[1]
        argv = [sys.executable, "-m", "gateway_provisioners.cli.docker_specapp", "install", "--prefix", str(scratch)]
        argv += ["--swarm", "--kernel-name", "swarm_kernel", "--image-name", engines.IMAGE]
        argv += ["--unauthorized-users", "nobody", "--launch-timeout", "60"]
        subprocess.run(argv, check=True, capture_output=True)
        socket_path = engine.host.removeprefix("unix://")
        mounts = [ROOT, Path(sys.base_prefix), scratch]
        volumes = [arg for m in mounts for arg in ("-v", f"{m}:{m}:ro")]
        engine.docker("run", "-d", "--name", container, "--network", overlay,
                      "-v", f"{socket_path}:/var/run/docker.sock", *volumes,
                      "--entrypoint", "sleep", engines.IMAGE, "infinity")  # fmt: skip
        address = engine.docker(
            "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{overlay}").IPAddress}}}}', container
        ).strip()
        venv = ROOT / ".venv" / "bin"
        env = {
            "PATH": f"{venv}:/usr/local/bin:/usr/bin:/bin",
            "HOME": "/tmp",
            "JUPYTER_PATH": engine.jupyter_path,
            "DOCKER_HOST": "unix:///var/run/docker.sock",
            "GP_DOCKER_NETWORK": overlay,
            "GP_RESPONSE_IP": address,
            "GP_POLL_INTERVAL": "0.05",
        }
        env_args = [arg for k, v in env.items() for arg in ("-e", f"{k}={v}")]
        serve = (f"exec {venv / 'python'} -m portico --port 8888 --token {TOKEN} --pool-size 0 "
                 "--proxy-entry-points false --root-dir /tmp > /tmp/portico.log 2>&1")  # fmt: skip
        engine.docker("exec", "-d", *env_args, container, "sh", "-c", serve)
        deadline = time.monotonic() + 60
        probe = f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8888/api?token={TOKEN}')"
        while subprocess.run([engines.DOCKER, "-H", engine.host, "exec", container, str(venv / "python"), "-c", probe],
                             capture_output=True).returncode != 0:  # fmt: skip
            if time.monotonic() > deadline:
                log = engine.docker("exec", container, "cat", "/tmp/portico.log", check=False)
                raise RuntimeError("Portico did not start in its container:\n" + log[-3000:])
            time.sleep(0.2)
        yield engine, container
    finally:
        engine.docker("rm", "-f", container, check=False)
        for service in engine.docker("service", "ls", "-q", check=False).split():
            engine.docker("service", "rm", service, check=False)
        engine.docker("network", "rm", overlay, check=False)
        engine.docker("swarm", "leave", "--force", check=False)
        engine.docker("network", "rm", "docker_gwbridge", check=False)  # the host bridge swarm made


@pytest.mark.timeout(600)  # an engine, perhaps the image's build, a swarm, a Portico in a container: first
def test_a_kernel_in_a_swarm_task_runs_is_interrupted_restarted_and_removed(swarm: tuple[Engine, str]) -> None:
    engine, container = swarm
    venv = ROOT / ".venv" / "bin"
    client = Path(__file__).with_name("swarm_client.py")
    done = subprocess.run(
        [engines.DOCKER, "-H", engine.host, "exec", container, str(venv / "python"), str(client),
         "http://127.0.0.1:8888/", TOKEN],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["start"] == 201, report
    kid = report["id"]
    host, kernel_env_id = report["where"].split()
    assert kernel_env_id == kid and kid in host and host != os.uname().nodename
    assert report["interrupted"] == "KeyboardInterrupt"
    assert report["restart"] == 200 and report["after restart"] == "False"
    assert report["new websocket"] == "42"
    assert report["delete"] == 204
    deadline = time.monotonic() + GONE_WITHIN
    while engine.docker("service", "ls", "-q", "--filter", f"label=kernel_id={kid}").split() or processes_with(
        f"KERNEL_ID={kid}"
    ):
        assert time.monotonic() < deadline, "the kernel's service or process outlived its DELETE"
        time.sleep(0.2)
