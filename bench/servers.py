"""The servers the benchmark compares: Portico, Jupyter Kernel Gateway, Jupyter Server.

Each runs as its own process on 127.0.0.1 with an ephemeral port; kernels run with IPython's
history off (history's shared SQLite file dominates p99 under concurrency and is not the
gateway's cost).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PORTICO = ROOT / ".venv" / "bin" / "portico"
ANCHORS = ROOT / "bench" / ".venv-anchors" / "bin"
TOKEN = "bench-token"


def ipython_dir() -> str:
    """An IPYTHONDIR whose kernels keep no history."""
    path = Path(tempfile.gettempdir()) / "portico-bench-ipython"
    config = path / "profile_default" / "ipython_kernel_config.py"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("c.HistoryManager.enabled = False\n")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: list[str] = field(default_factory=list)  # its last 200 lines of stderr
    own_log: list[str] = field(default_factory=list)  # its last 200 log records (not its kernels' output)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {TOKEN}"}

    def rss_kib(self, field_name: str = "VmRSS") -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _die_with_parent() -> None:
    """In the child: SIGTERM it if the benchmark dies, so no server outlives the run."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(name: str, argv: list[str], port: int) -> Server:
    env = {**os.environ, "IPYTHONDIR": ipython_dir()}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tempfile.gettempdir(),
        preexec_fn=_die_with_parent,
    )
    server = Server(name, proc, f"http://127.0.0.1:{port}/")

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            text = line.decode(errors="replace")
            server.log.append(text)
            del server.log[:-200]
            if text.startswith("[") and " portico]" in text[:40]:
                server.own_log.append(text)
                del server.own_log[:-200]

    threading.Thread(target=drain, daemon=True).start()
    return server


async def wait_ready(server: Server, path: str = "api/kernelspecs") -> None:
    async with aiohttp.ClientSession() as http:
        async with asyncio.timeout(60):
            while True:
                if server.proc.poll() is not None:
                    raise RuntimeError(f"{server.name} exited:\n" + "".join(server.log[-20:]))
                try:
                    async with http.get(server.url + path, headers=server.headers) as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)


async def portico(pool: int = 0, extra: list[str] | None = None) -> Server:
    port = free_port()
    inherit = "HOME,LANG,LC_ALL,TZ,TMPDIR,USER,IPYTHONDIR"
    server = _spawn(
        "Portico",
        [
            str(PORTICO),
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--pool-size",
            str(pool),
            "--kernel-env-inherit",
            inherit,
            "--log-level",
            "warning",
            "--max-body-size",
            str(1 << 30),
            *(extra or []),
        ],
        port,
    )
    await wait_ready(server)
    return server


async def kernel_gateway(rate_limit: bool = False) -> Server:
    port = free_port()
    server = _spawn(
        "Kernel Gateway",
        [
            str(ANCHORS / "jupyter-kernelgateway"),
            f"--KernelGatewayApp.port={port}",
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.auth_token={TOKEN}",
            f"--ZMQChannelsWebsocketConnection.limit_rate={rate_limit}",
            "--log-level=WARN",
        ],
        port,
    )
    await wait_ready(server)
    return server


async def jupyter_server(rate_limit: bool = False) -> Server:
    port = free_port()
    server = _spawn(
        "Jupyter Server",
        [
            str(ANCHORS / "jupyter-server"),
            f"--port={port}",
            "--ip=127.0.0.1",
            f"--IdentityProvider.token={TOKEN}",
            "--allow-root",
            "--no-browser",
            f"--ZMQChannelsWebsocketConnection.limit_rate={rate_limit}",
            "--log-level=WARN",
        ],
        port,
    )
    await wait_ready(server)
    return server


async def notebook_api(name: str, notebook: str, pool: int, ready_path: str) -> Server:
    """Portico's notebook HTTP API, or Kernel Gateway's notebook-http mode, with a fixed pool."""
    port = free_port()
    if name == "Portico":
        argv = [
            str(PORTICO),
            "--port",
            str(port),
            "--token",
            TOKEN,
            "--pool-size",
            "0",
            "--notebook",
            notebook,
            "--proxy-entry-points",
            "false",
            "--notebook-pool-min",
            str(pool),
            "--notebook-pool-max",
            str(pool),
            "--log-level",
            "warning",
            "--kernel-env-inherit",
            "HOME,LANG,LC_ALL,TZ,TMPDIR,USER,IPYTHONDIR",
        ]
    else:
        argv = [
            str(ANCHORS / "jupyter-kernelgateway"),
            f"--KernelGatewayApp.port={port}",
            "--KernelGatewayApp.ip=127.0.0.1",
            f"--KernelGatewayApp.auth_token={TOKEN}",
            "--KernelGatewayApp.api=kernel_gateway.notebook_http",
            f"--KernelGatewayApp.seed_uri={notebook}",
            f"--KernelGatewayApp.prespawn_count={pool}",
            "--log-level=WARN",
        ]
    server = _spawn(name, argv, port)
    await wait_ready(server, ready_path)
    return server


STARTERS = {"Portico": portico, "Kernel Gateway": kernel_gateway, "Jupyter Server": jupyter_server}


def version_of(name: str) -> str:
    if name == "Portico":
        out = subprocess.run([str(PORTICO), "--version"], capture_output=True, text=True).stdout
    elif not (ANCHORS / "python").exists():
        return "(not set up: bench/run installs it)"
    else:
        module = {"Kernel Gateway": "kernel_gateway", "Jupyter Server": "jupyter_server"}[name]
        out = subprocess.run(
            [str(ANCHORS / "python"), "-c", f"import {module}; print({module}.__version__)"],
            capture_output=True,
            text=True,
        ).stdout
    match = re.search(r"[\d.]+\S*", out)
    return match.group(0) if match else "?"
