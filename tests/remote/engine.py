"""A private Docker engine for the Docker tier: Debian's dockerd with its own socket, data root and
bridge network, no iptables changes, no image registry (the kernel image is built here by
kernel-image.sh and cached as a `docker save` file between runs on one machine)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"  # Debian's client, the engine's own version
SCRIPT = Path(__file__).with_name("kernel-image.sh")
IMAGE = "portico-test/kernel:latest"
LOCK = "/tmp/portico-kernel-image.lock"


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "the Docker tier needs root (a private dockerd)"
    for path in (DOCKERD, DOCKER, "/usr/sbin/debootstrap"):
        if not os.path.exists(path):
            return (
                f"the Docker tier needs {path} (Debian's docker.io and debootstrap; scripts/setup --test installs them)"
            )
    return None


def cached_image() -> Path:
    """Where the image built by this version of kernel-image.sh is kept between runs."""
    digest = hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:12]
    return Path(f"/tmp/portico-kernel-image-{digest}.tar")


@dataclass
class Engine:
    scratch: Path
    tag: str
    subnet: int
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None
    network_needed: bool = True
    jupyter_path: str = ""

    @property
    def host(self) -> str:
        return f"unix://{self.scratch}/docker.sock"

    @property
    def network(self) -> str:
        return f"pk{self.tag}"

    @property
    def gateway(self) -> str:
        return f"10.202.{self.subnet}.1"

    def docker(self, *args: str, check: bool = True) -> str:
        env = {**os.environ, "DOCKER_HOST": self.host}
        done = subprocess.run([DOCKER, *args], capture_output=True, text=True, env=env)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def env(self) -> dict[str, str]:
        """What a Portico using this engine needs in its environment."""
        return {
            "DOCKER_HOST": self.host,
            "GP_DOCKER_NETWORK": self.network,
            "GP_RESPONSE_IP": self.gateway,
            "GP_POLL_INTERVAL": "0.05",
        }

    def start(self) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        s = self.scratch
        self.log = open(s / "dockerd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [DOCKERD, "--data-root", f"{s}/data", "--exec-root", f"{s}/exec", "--pidfile", f"{s}/dockerd.pid",
             "--host", self.host, "--storage-driver", "overlay2", "--iptables=false", "--ip6tables=false",
             "--ip-forward=false", "--ip-masq=false", "--bridge=none", "--exec-opt", "native.cgroupdriver=cgroupfs"],
            stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while subprocess.run([DOCKER, "-H", self.host, "version"], capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the private dockerd did not start: " + (s / "dockerd.log").read_text()[-2000:])
            time.sleep(0.1)
        if not self.network_needed:
            return
        bridge = f"pkb{self.tag}"
        self.docker("network", "create", "--subnet", f"10.202.{self.subnet}.0/24", "--gateway", self.gateway,
                    "-o", f"com.docker.network.bridge.name={bridge}", self.network)  # fmt: skip

    def load_image(self) -> None:
        """The kernel image: from the cache, else built (about a minute) and cached.  One
        builder at a time on a machine (scripts/test starts one early, in the background)."""
        cache = cached_image()
        with open(LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if cache.exists():
                self.docker("load", "-i", str(cache))
                return
            done = subprocess.run(
                ["bash", str(SCRIPT), str(self.scratch / "build"), IMAGE],
                capture_output=True,
                text=True,
                env={**os.environ, "DOCKER_HOST": self.host, "PYTHON": sys.executable},
            )
            if done.returncode != 0:
                raise RuntimeError(f"kernel-image.sh failed: {done.stderr[-3000:]}")
            partial = cache.with_suffix(f".{os.getpid()}")
            self.docker("save", IMAGE, "-o", str(partial))
            partial.rename(cache)
            shutil.rmtree(self.scratch / "build", ignore_errors=True)

    def containers(self, kernel_id: str | None = None) -> list[str]:
        """Containers of this engine (all states), those of one kernel when given."""
        label = ["--filter", f"label=kernel_id={kernel_id}"] if kernel_id else []
        return self.docker("ps", "-aq", *label).split()

    def stop(self) -> None:
        if self.proc is None:
            return
        for container in self.containers():
            self.docker("rm", "-f", container, check=False)
        if self.network_needed:
            self.docker("network", "rm", self.network, check=False)
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        subprocess.run(["umount", f"{self.scratch}/exec/netns/default"], capture_output=True)
        self.proc = None
        self.log.close()


def prepare() -> None:
    """The kernel image built and cached ahead of the Docker tier, with an engine of its own."""
    import tempfile

    if why_not() is not None or cached_image().exists():
        return
    engine = Engine(Path(tempfile.mkdtemp(prefix="portico-image-")), f"i{os.getpid() % 10000}", 0)
    engine.network_needed = False
    try:
        engine.start()
        engine.load_image()
    finally:
        engine.stop()
        shutil.rmtree(engine.scratch, ignore_errors=True)


if __name__ == "__main__":
    prepare()
