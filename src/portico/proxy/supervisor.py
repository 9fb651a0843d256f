"""Starting, watching and stopping the proxied processes.

    stopped --(request or start)--> starting --(any HTTP answer)--> running
    running --(exit, any code)--> exited --(next request)--> starting
    starting/running --(exit within min uptime)--> backoff --(delay passed, next request)--> starting

Concurrent first requests share one start.  A process that keeps exiting soon after its start
waits 0.5 s, 1 s, 2 s, ... (up to proxy_restart_max_backoff) before its next start, as
supervisord does; requests meanwhile get a 502 that says when.  Each process runs in its own
process group, which is what stop() ends; a unix_socket of True lives in a private (0700)
temporary directory, removed when the process stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..environment import inherited, without_secrets
from ..errors import BadGateway, GatewayTimeout
from ..settings import Settings
from .config import ServerSpec, call_with

log = logging.getLogger("portico")

PROBE_FIRST, PROBE_MAX = 0.005, 0.05  # readiness polling: first wait, longest (a refused connect is cheap)


@dataclass(frozen=True)
class Backend:
    """Where a server listens: a TCP port on a host, or a Unix socket."""

    host: str = "127.0.0.1"
    port: int = 0
    unix_socket: str = ""

    @property
    def label(self) -> str:
        return f"unix:{self.unix_socket}" if self.unix_socket else f"{self.host}:{self.port}"

    def connector(self) -> aiohttp.BaseConnector:
        if self.unix_socket:
            return aiohttp.UnixConnector(path=self.unix_socket, limit=0)
        return aiohttp.TCPConnector(limit=0, use_dns_cache=True)

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}" if not self.unix_socket else "http://localhost"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Process:
    """One named server: its process (if it has a command), its state and its output."""

    def __init__(self, spec: ServerSpec, settings: Settings) -> None:
        self.spec = spec
        self.settings = settings
        self.state = "stopped" if spec.runs_process else "external"
        self.pid: int | None = None
        self.started_at: float | None = None
        self.restarts = 0  # starts after the first
        self.failures = 0  # consecutive exits within the minimum uptime
        self.exit_code: int | None = None
        self.not_before = 0.0  # monotonic time before which a crashing process is not started again
        self.last_activity = time.time()
        self.stdout: deque[str] = deque(maxlen=settings.proxy_log_lines)
        self.stderr: deque[str] = deque(maxlen=settings.proxy_log_lines)
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[Any]] = []
        self._socket_dir: str | None = None
        self.backend = self._backend()

    def _backend(self) -> Backend:
        spec = self.spec
        if spec.unix_socket is True:
            self._socket_dir = tempfile.mkdtemp(prefix=f"portico-{spec.name}-")  # 0700
            return Backend(unix_socket=os.path.join(self._socket_dir, "socket"))
        if isinstance(spec.unix_socket, str) and spec.unix_socket:
            return Backend(unix_socket=spec.unix_socket)
        return Backend(port=spec.port or (free_port() if spec.runs_process else 0))

    # what the API shows --------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        uptime = time.time() - self.started_at if self.started_at and self.state == "running" else None
        return {
            "name": self.spec.name,
            "state": self.state,
            "pid": self.pid,
            "uptime": uptime,
            "restarts": self.restarts,
            "exit_code": self.exit_code,
            "backend": self.backend.label,
            "last_activity": self.last_activity,
        }

    # starting ------------------------------------------------------------------------
    async def ensure(self) -> Backend:
        """The backend, started and answering; 502 or 504 (with the reason) if it cannot be."""
        if self.state in ("running", "external"):
            return self.backend
        async with self._lock:  # concurrent first requests wait for the same start
            if self.state == "running":
                return self.backend
            wait = self.not_before - time.monotonic()
            if wait > 0:
                raise BadGateway(
                    f"Server {self.spec.name} exited {self.failures} times within "
                    f"{self.settings.proxy_restart_min_uptime:g} s of starting; next start in {wait:.1f} s."
                    f"{self._last_words()}",
                    "Server Crashing",
                    headers={"Retry-After": str(int(wait) + 1)},
                )
            await self._start()
            return self.backend

    def template_values(self) -> dict[str, Any]:
        return {"port": self.backend.port, "unix_socket": self.backend.unix_socket, "base_url": self.settings.base_url}

    def _command(self) -> list[str]:
        spec, values = self.spec, self.template_values()
        if callable(spec.command):
            # the process runs in root_dir: a callable that looks for files sees the same directory
            # (synchronous, so no other task runs while the working directory is changed)
            here = os.getcwd()
            os.chdir(self.settings.root_dir)
            try:
                command = call_with(spec.command, **values)
            finally:
                os.chdir(here)
        else:
            command = spec.command
        return [str(part).format(**values) for part in command]

    def _environment(self) -> dict[str, str]:
        values = self.template_values()
        env = inherited(self.settings.proxy_env_inherit)
        extra = call_with(self.spec.environment, **values) if callable(self.spec.environment) else self.spec.environment
        env.update({str(k): str(v).format(**values) for k, v in (extra or {}).items()})
        return without_secrets(env, self.settings.token)

    async def _start(self) -> None:
        name = self.spec.name
        if self.backend.unix_socket and os.path.exists(self.backend.unix_socket) and self._socket_dir:
            os.unlink(self.backend.unix_socket)
        try:
            command = self._command()
            self._proc = await asyncio.create_subprocess_exec(
                *command,
                env=self._environment(),
                cwd=self.settings.root_dir,
                start_new_session=True,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except (OSError, KeyError, IndexError, ValueError) as e:
            self.state, self.exit_code = "failed", None
            raise BadGateway(f"Server {name} could not be started: {type(e).__name__}: {e}", "Server Failed") from None
        if self.started_at is not None:
            self.restarts += 1
        self.pid, self.started_at, self.state, self.exit_code = self._proc.pid, time.time(), "starting", None
        log.info("server %s started (pid %d): %s", name, self._proc.pid, " ".join(command))
        self._tasks = [
            asyncio.create_task(self._read(self._proc.stdout, self.stdout, "stdout")),
            asyncio.create_task(self._read(self._proc.stderr, self.stderr, "stderr")),
            asyncio.create_task(self._watch(self._proc)),
        ]
        try:
            await self._wait_ready()
        except BaseException:
            if self.state == "starting":
                await self.stop("did not become ready")
            raise
        self.state = "running"

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.spec.timeout
        delay = PROBE_FIRST
        while True:
            if self._proc is None or self._proc.returncode is not None:
                code = self._proc.returncode if self._proc else None
                await asyncio.sleep(0.05)  # let the readers take its last words
                raise BadGateway(
                    f"Server {self.spec.name} exited with code {code} while starting.{self._last_words()}",
                    "Server Exited",
                )
            if await self._answers():
                return
            if time.monotonic() >= deadline:
                raise GatewayTimeout(
                    f"Server {self.spec.name} did not answer within its timeout of "
                    f"{self.spec.timeout:g} s (option timeout).{self._last_words()}",
                    "Server Timeout",
                )
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, PROBE_MAX)

    async def _answers(self) -> bool:
        """Any HTTP answer counts (a raw socket server: accepting a connection)."""
        b = self.backend
        try:
            async with asyncio.timeout(1.0):
                if self.spec.raw_socket_proxy:
                    if b.unix_socket:
                        _, writer = await asyncio.open_unix_connection(b.unix_socket)
                    else:
                        _, writer = await asyncio.open_connection(b.host, b.port)
                    writer.close()
                    return True
                async with aiohttp.ClientSession(connector=b.connector()) as http:
                    async with http.get(b.origin + self.spec.probe_path, allow_redirects=False):
                        return True
        except (OSError, aiohttp.ClientError, TimeoutError):
            return False

    def _last_words(self) -> str:
        lines = list(self.stderr)[-3:] or list(self.stdout)[-3:]
        return (" Last output: " + " | ".join(line.strip() for line in lines)) if lines else ""

    async def _read(self, stream: asyncio.StreamReader | None, lines: deque[str], name: str) -> None:
        if stream is None:
            return
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the reader's limit: skip what is buffered
                continue
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            lines.append(text)
            log.debug("server %s %s: %s", self.spec.name, name, text)

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self._signal(proc.pid, signal.SIGKILL)  # what it left in its group (pids come in sequence: not reused yet)
        if proc is not self._proc:
            return
        uptime = time.time() - (self.started_at or time.time())
        self.exit_code, self.pid = code, None
        if self.state == "stopping":
            return
        if uptime < self.settings.proxy_restart_min_uptime:
            self.failures += 1
            delay = min(self.settings.proxy_restart_max_backoff, 0.5 * 2 ** (self.failures - 1))
            self.not_before = time.monotonic() + delay
            self.state = "backoff"
            log.warning(
                "server %s exited with code %s after %.1f s (%d in a row); next start in %.1f s at the earliest",
                self.spec.name,
                code,
                uptime,
                self.failures,
                delay,
            )
        else:
            self.failures = 0
            self.state = "exited"
            log.warning(
                "server %s exited with code %s after %.0f s; it starts again on the next request",
                self.spec.name,
                code,
                uptime,
            )

    # stopping ------------------------------------------------------------------------
    async def stop(self, reason: str = "stopped") -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            self.state = "stopping"
            self._signal(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(self.settings.proxy_stop_wait):
                    await proc.wait()
            except TimeoutError:
                self._signal(proc.pid, signal.SIGKILL)
                await proc.wait()
            log.info("server %s %s (exit code %s)", self.spec.name, reason, proc.returncode)
            self._signal(proc.pid, signal.SIGKILL)  # children that outlived it
        for task in self._tasks:
            task.cancel()
        self.state, self.pid, self.failures, self.not_before = "stopped", None, 0, 0.0
        self.exit_code = proc.returncode if proc else None

    @staticmethod
    def _signal(pid: int | None, sig: int) -> None:
        if pid is None:
            return
        try:
            os.killpg(pid, sig)  # the process group: children too
        except (ProcessLookupError, PermissionError):
            pass

    async def restart(self) -> None:
        async with self._lock:
            await self.stop("stopped for a restart")
            await self._start()

    async def close(self) -> None:
        await self.stop("stopped with the server")
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
