"""Test hosts for remote kernels: network namespaces on a bridge of their own, each with its own
hostname (a UTS namespace) and its own sshd, reachable only from this machine.

Root is needed (ip netns, veth, sshd's privilege separation).  Everything lives in one scratch
directory: keys, sshd configs, known_hosts, the kernels' logs.  The namespaces share the
filesystem and the PID space with the tests, so the same interpreter and kernelspec paths exist
"remotely", and a test can read a remote kernel's state from procfs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def why_not() -> str | None:
    """Why the hosts cannot be built here, or None."""
    if os.geteuid() != 0:
        return "the remote tier needs root (network namespaces, sshd)"
    for tool in ("ip", "unshare", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"the remote tier needs {tool!r}"
    if not os.path.exists(SSHD):
        return f"the remote tier needs {SSHD} (Debian's openssh-server; scripts/setup --test installs it)"
    return None


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def quiet(*argv: str) -> None:
    subprocess.run(argv, capture_output=True)


def ssh_spec(jupyter: Path, name: str, hosts: list[str], python: str, launch_timeout: int = 30) -> dict:
    """A kernelspec from gateway_provisioners' own generator, as a user would install it, with
    the interpreter's absolute path (over SSH, a bare `python` is whatever the remote shell finds)."""
    argv = [
        sys.executable,
        "-m",
        "gateway_provisioners.cli.ssh_specapp",
        "install",
        "--prefix",
        str(jupyter.parent.parent),
    ]
    argv += ["--kernel-name", name, "--unauthorized-users", "nobody", "--launch-timeout", str(launch_timeout)]
    for host in hosts:
        argv += ["--remote-hosts", host]
    subprocess.run(argv, check=True, capture_output=True)
    path = jupyter / "kernels" / name / "kernel.json"
    spec = json.loads(path.read_text())
    spec["argv"][0] = python
    path.write_text(json.dumps(spec, indent=1))
    return spec


def free_subnet(second: int = 201) -> int:
    """A third octet x such that 10.<second>.x.0/24 is on no interface or route of this machine."""
    used = run("ip", "-4", "route", "show") + run("ip", "-4", "addr", "show")
    start = os.getpid() % 250
    for step in range(250):
        x = (start + step) % 250 + 1
        if f"10.{second}.{x}." not in used:
            return x
    raise RuntimeError(f"no free 10.{second}.x.0/24 subnet for the test hosts")


@dataclass
class Host:
    name: str  # the namespace, and the hostname inside it
    address: str
    sshd: subprocess.Popen[bytes] | None = None


@dataclass
class Hosts:
    scratch: Path
    tag: str
    subnet: int
    hosts: list[Host] = field(default_factory=list)
    jupyter_path: str = ""  # where the kernelspecs for these hosts are

    @property
    def bridge(self) -> str:
        return f"pb{self.tag}"

    @property
    def gateway(self) -> str:
        """This machine's address on the bridge: where kernels send their connection info."""
        return f"10.201.{self.subnet}.1"

    @property
    def home(self) -> Path:
        return self.scratch / "home"

    @property
    def logs(self) -> Path:
        return self.scratch / "logs"

    def env(self) -> dict[str, str]:
        """What a Portico using these hosts needs in its environment."""
        return {
            "HOME": str(self.home),
            "GP_RESPONSE_IP": self.gateway,
            "GP_KERNEL_LOG_DIR": str(self.logs),
            "GP_REMOTE_USER": "root",
            "GP_POLL_INTERVAL": "0.05",
        }

    def build(self, count: int) -> None:
        self.scratch.mkdir(parents=True, exist_ok=True)
        for d in ("home/.ssh", "logs", "sshd"):
            (self.scratch / d).mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation directory
        keys = self.scratch / "sshd"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host_key"))
        client_key = self.home / ".ssh" / "id_ed25519"
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(client_key))
        shutil.copy(f"{client_key}.pub", keys / "authorized_keys")
        host_public = (keys / "host_key.pub").read_text().split()[:2]
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        known = []
        for i in range(1, count + 1):
            host = Host(f"kh{self.tag}-{i}", f"10.201.{self.subnet}.{i + 1}")
            self.add(host, i)
            known.append(f"{host.address} {' '.join(host_public)}\n")
        (self.home / ".ssh" / "known_hosts").write_text("".join(known))
        for host in self.hosts:
            self._wait_for_sshd(host)

    def add(self, host: Host, i: int) -> None:
        ns, veth = host.name, f"pv{self.tag}{i}"
        run("ip", "netns", "add", ns)
        self.hosts.append(host)
        run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "link", "set", veth, "master", self.bridge, "up")
        run("ip", "-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        keys = self.scratch / "sshd"
        config = keys / f"sshd_config.{ns}"
        config.write_text(
            f"ListenAddress {host.address}\n"
            f"HostKey {keys / 'host_key'}\n"
            f"PidFile {keys / (ns + '.pid')}\n"
            f"AuthorizedKeysFile {keys / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
            "StrictModes no\nMaxStartups 100:30:200\n"
        )
        log = self.logs / f"sshd-{ns}.log"
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "unshare", "--uts", "sh", "-c",
             f"hostname {ns}; exec {SSHD} -D -f {config} -E {log}"],
        )  # fmt: skip
        host.sshd = proc  # the exec chain keeps sshd's pid

    def _wait_for_sshd(self, host: Host, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((host.address, 22), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd on {host.name} ({host.address}) did not start") from None
                time.sleep(0.02)

    def pids(self, host: Host) -> list[int]:
        """Processes in the host's network namespace (sshd and whatever it started)."""
        out = subprocess.run(["ip", "netns", "pids", host.name], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def teardown(self) -> None:
        for host in self.hosts:
            if host.sshd is not None:
                host.sshd.kill()
                host.sshd.wait()
            for pid in self.pids(host):
                quiet("kill", "-9", str(pid))
            quiet("ip", "netns", "del", host.name)
        quiet("ip", "link", "del", self.bridge)
        self.hosts.clear()


def running(pid: int) -> bool:
    """Whether pid is a live process (a zombie counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def netns_of(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")
