"""Test helpers: a real Portico server in a subprocess, and a small kernel WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import ctypes
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from portico.app import build_app
from portico.cli import app_runner, listening_port
from portico.kernels import wire
from portico.logs import TEXT_FORMAT
from portico.settings import Settings

URL_LINE = re.compile(r"serving at (\S+)")


class Address:
    """How a test reaches a Portico, in a process of its own or in-process: url and token."""

    url: str  # http://127.0.0.1:PORT/base/
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:]


@dataclass
class Server(Address):
    proc: subprocess.Popen[str]
    url: str
    token: str
    stderr: list[str] = field(default_factory=list)
    drain: threading.Thread | None = None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            if self.drain is not None:
                self.drain.join(5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def jupyter_server(argv: list[str], home: Path, token: str, timeout: float = 90) -> Iterator[Server]:
    """A Jupyter Server (a peer: gateway mode, nbmodel) on a free port of 127.0.0.1 with its config,
    runtime and data under home, once it says it is running; argv is its command before the options."""
    port = free_port()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTER_DATA_DIR": str(home / "data"),
    }
    options = [f"--IdentityProvider.token={token}", "--allow-root", f"--port={port}", "--ip=127.0.0.1"]
    options += ["--no-browser", f"--ServerApp.root_dir={home}"]
    proc = subprocess.Popen([*argv, *options], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    assert proc.stderr is not None
    ready, lines = threading.Event(), []

    def watch() -> None:
        with proc.stderr:  # type: ignore[union-attr]
            for line in proc.stderr:  # type: ignore[union-attr]
                lines.append(line)
                if "is running at" in line:
                    ready.set()
        ready.set()  # it exited: the assertion below shows why

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        assert ready.wait(timeout) and proc.poll() is None, "".join(lines)
        yield Server(proc, f"http://127.0.0.1:{port}/", token, lines, watcher)
    finally:
        proc.terminate()
        proc.wait(30)
        watcher.join(5)


def die_with_parent() -> None:
    """In the child: SIGTERM it when the test process dies, so a killed test run leaves no server."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_server(
    *args: str,
    env: dict[str, str] | None = None,
    token: str | None = "test-token",
    timeout: float = 30,
    python: str = sys.executable,
    cwd: str | None = None,
) -> Server:
    """Start `python -m portico` on an ephemeral port and wait until it prints its URL."""
    argv = [python, "-m", "portico", "--port", "0", *args]
    if "--pool-size" not in args:
        argv += ["--pool-size", "0"]  # the pool has its own tests; elsewhere it only costs CPU
    if "--proxy-entry-points" not in args:
        argv += ["--proxy-entry-points", "false"]  # installed plugins (tests/proxy/test_plugins.py) take /hello, /panel
    if token is not None:
        argv += ["--token", token]
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=cwd,
        preexec_fn=die_with_parent,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr: list[str] = []

    def drain_stderr() -> None:
        with proc.stderr:  # type: ignore[union-attr]
            stderr.extend(proc.stderr)  # type: ignore[arg-type]

    drain = threading.Thread(target=drain_stderr, daemon=True)
    drain.start()
    found: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            m = URL_LINE.search(line)
            if m:
                found.append(m.group(1))
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    if not found:
        proc.kill()
        proc.wait()
        drain.join(5)
        proc.stdout.close()
        raise RuntimeError("portico did not start:\n" + "".join(stderr))
    url = found[0]
    tok = re.search(r"token=([^&]+)", url)
    base = url.split("?")[0]
    return Server(proc, base, tok.group(1) if tok else "", stderr, drain)


class KernelClient:
    """A minimal client of /api/kernels/{id}/channels, in either protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session_id: str) -> None:
        self.ws = ws
        self.session_id = session_id
        self.v1 = ws.protocol == wire.V1_PROTOCOL
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.seen: list[dict[str, Any]] = []  # every message received, also those a wait skipped
        self.closed = asyncio.Event()
        self.close_reason = ""
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls,
        http: aiohttp.ClientSession,
        server: Server,
        kernel_id: str,
        v1: bool = True,
        session_id: str | None = None,
        since: int | str | None = None,
        params: None = None,
        **kw: Any,
    ) -> KernelClient:
        session_id = session_id or uuid.uuid4().hex
        query = f"session_id={session_id}" + (f"&since={since}" if since is not None else "")
        ws = await http.ws_connect(
            f"{server.ws_url}api/kernels/{kernel_id}/channels?{query}",
            protocols=[wire.V1_PROTOCOL] if v1 else [],
            headers=server.headers,
            max_msg_size=0,
            **kw,
        )
        return cls(ws, session_id)

    async def _read(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type == aiohttp.WSMsgType.TEXT:
                received = orjson.loads(msg.data)
            elif msg.type == aiohttp.WSMsgType.BINARY:
                received = decode(msg.data, self.v1)
            else:
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    self.close_reason = str(msg.extra or "")
                break
            self.seen.append(received)
            self.messages.put_nowait(received)
        self.closed.set()

    def message(
        self,
        msg_type: str,
        content: dict[str, Any],
        channel: str = "shell",
        buffers: Sequence[bytes] = (),
        parent: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        built = wire.build(msg_type, content, parent, session=self.session_id)
        return {
            "header": built.header,
            "parent_header": parent or {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": list(buffers),
        }

    async def send(self, msg: dict[str, Any]) -> None:
        buffers = msg.get("buffers") or []
        if self.v1:
            parts = [orjson.dumps(msg[k]) for k in ("header", "parent_header", "metadata", "content")]
            await self.ws.send_bytes(wire.to_v1(msg["channel"].encode(), parts + list(buffers)))
        elif buffers:
            body = {k: v for k, v in msg.items() if k != "buffers"}
            text = orjson.dumps(body)
            n = 1 + len(buffers)
            offsets = [4 * (n + 1)]
            for part in [text, *buffers][:-1]:
                offsets.append(offsets[-1] + len(part))
            import struct

            await self.ws.send_bytes(struct.pack(f"!{n + 1}I", n, *offsets) + text + b"".join(buffers))
        else:
            await self.ws.send_str(orjson.dumps(msg).decode())

    async def request(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg = self.message(msg_type, content, channel)
        await self.send(msg)
        return str(msg["header"]["msg_id"])

    async def execute(
        self, code: str, timeout: float = 30, stall: float | None = None, **content: Any
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Run code; return (execute_reply, iopub messages of this execution) once idle."""
        msg_id = await self.request(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": True,
                "user_expressions": {},
                "allow_stdin": True,
                "stop_on_error": True,
                **content,
            },
        )
        return await self.collect(msg_id, timeout, stall)

    async def collect(
        self, msg_id: str, timeout: float = 30, stall: float | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The reply and output of one request, once idle, within timeout s; with stall, a long
        flow may take as long as it flows, and only a gap of stall s without a message fails."""
        reply: dict[str, Any] | None = None
        outputs: list[dict[str, Any]] = []
        idle = False
        async with asyncio.timeout(timeout if stall is None else None):
            while reply is None or not idle:
                try:
                    msg = await asyncio.wait_for(self.messages.get(), stall)
                except TimeoutError:
                    if self.closed.is_set():
                        why = f"the connection closed ({self.ws.close_code}: {self.close_reason})"
                        raise AssertionError(f"{why} after {len(outputs)} outputs") from None
                    raise AssertionError(f"stalled: no message for {stall} s ({len(outputs)} outputs so far)") from None
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if msg["channel"] == "iopub":
                    if msg["header"]["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        idle = True
                    else:
                        outputs.append(msg)
                elif msg["channel"] == "shell":
                    reply = msg
        return reply, outputs

    async def next(self, predicate: Any, timeout: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.messages.get()
                if predicate(msg):
                    return msg

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()


def decode(data: bytes, v1: bool) -> dict[str, Any]:
    if v1:
        channel, parts = wire.from_v1(data)
        msg = {
            k: orjson.loads(p) for k, p in zip(("header", "parent_header", "metadata", "content"), parts, strict=False)
        }
        msg["channel"] = channel
        msg["buffers"] = parts[4:]
        return msg
    msg, buffers = wire.from_json_binary(data)
    msg["buffers"] = buffers
    return msg


def raw_websocket(srv: Server, kid: str, session_id: str, rcvbuf: int = 4096) -> socket.socket:
    """A kernel WebSocket (JSON protocol) on a plain socket with a tiny receive buffer, past the
    handshake: it reads only when and as fast as its owner chooses."""
    host, port = srv.url.split("/")[2].split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /api/kernels/{kid}/channels?session_id={session_id} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: token {srv.token}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def pong(sock: socket.socket, ping: bytes) -> None:
    """Answer a server's ping as a browser does (a client's frames are masked)."""
    mask = os.urandom(4)
    sock.sendall(bytes([0x8A, 0x80 | len(ping)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(ping)))


def websocket_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The whole (opcode, payload) server frames at the start of buffer, taken out of it."""
    frames = []
    while len(buffer) >= 2:
        size, at = buffer[1] & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                break
            size, at = int.from_bytes(buffer[2:4], "big"), 4
        elif size == 127:
            if len(buffer) < 10:
                break
            size, at = int.from_bytes(buffer[2:10], "big"), 10
        if len(buffer) < at + size:
            break
        frames.append((buffer[0] & 0x0F, bytes(buffer[at : at + size])))
        del buffer[: at + size]
    return frames


async def start_kernel(http: aiohttp.ClientSession, server: Server, **body: Any) -> str:
    async with http.post(f"{server.url}api/kernels", json=body, headers=server.headers) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


def stdout_of(outputs: list[dict[str, Any]]) -> str:
    return "".join(
        m["content"]["text"]
        for m in outputs
        if m["header"]["msg_type"] == "stream" and m["content"]["name"] == "stdout"
    )


async def logged(server: Server | LocalServer, text: str, timeout: float = 10) -> bool:
    """Whether the server logs text within timeout (its stderr is read by another thread)."""
    await eventually(lambda: any(text in line for line in list(server.stderr)), f"the log line {text!r}", timeout)
    return True


def write_notebook(
    path: Any, cells: Sequence[str | tuple[str, str]], kernel: str = "python3", language: str = "python"
) -> str:
    """A notebook file of code cells (a ("markdown", text) pair for a markdown cell); its path."""
    import nbformat

    made = [
        nbformat.v4.new_markdown_cell(c[1]) if isinstance(c, tuple) else nbformat.v4.new_code_cell(c) for c in cells
    ]
    nb = nbformat.v4.new_notebook(cells=made)
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": language}
    nb.metadata["language_info"] = {"name": language}
    nbformat.write(nb, str(path))
    return str(path)


def processes_with(entry: str, in_file: str = "environ") -> list[int]:
    """PIDs whose /proc/PID/environ (or cmdline) holds entry as one of its NUL-separated items."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            items = (proc / in_file).read_bytes().split(b"\0")
        except OSError:
            continue
        if entry.encode() in items:
            found.append(int(proc.name))
    return found


def kernel_class_spec(root: Path, name: str, module: str, source: str, kernel_class: str) -> None:
    """A kernelspec under root/kernels/name (put root on JUPYTER_PATH): ipykernel, started through
    ipykernel_launcher (so Portico's boot script applies), with kernel_class from module's source."""
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    (spec / f"{module}.py").write_text(source)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [*argv, f"--IPKernelApp.kernel_class={module}.{kernel_class}"],
                "env": {"PYTHONPATH": str(spec)},
                "display_name": name,
                "language": "python",
            }
        )
    )


def readme_example(section: str) -> tuple[str, list[tuple[str, str]]]:
    """A README section's `scripts/run --token secret ARGS` line (ARGS) and its ```sh session
    as (command, expected output) pairs."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    text = readme[readme.index(section) :]
    run = re.search(r"^scripts/run --token secret (.+)$", text, re.M)
    commands = re.search(r"```sh\n(.*?)```", text, re.S)
    assert run and commands, f"the README's example under {section!r} moved"
    lines = commands.group(1).strip().splitlines()
    return run.group(1), [(c, e.removeprefix("# ")) for c, e in zip(lines[::2], lines[1::2], strict=False)]


def run_session(server: Server, session: list[tuple[str, str]]) -> None:
    """Run README commands against server (its URL and token put in) and compare their output."""
    for command, expected in session:
        command = command.replace("http://127.0.0.1:8888/", server.url).replace("token secret", f"token {server.token}")
        out = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60).stdout
        assert out.strip() == expected, command


def schemathesis(url: str, token: str, workdir: Any, examples: int, *paths: str) -> subprocess.CompletedProcess[str]:
    """schemathesis on an OpenAPI document: every check but the stateful resource ones; paths are
    schemathesis's path filters (--include-path-regex R, --exclude-path-regex R)."""
    from pathlib import Path

    return subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            url,
            "-H",
            f"Authorization: token {token}",
            "--checks",
            "all",
            "--exclude-checks",
            "use_after_free,ensure_resource_availability,object_level_authorization,positive_data_acceptance",
            "--max-examples",
            str(examples),
            "--seed",
            "1",
            "--generation-database",
            "none",
            "--report-dir",
            str(workdir),
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
    )


TOKEN_HEADERS = {"Authorization": "token test-token"}
EXECUTION_PATHS = r"^/(api/execute|api/kernels/\{id\}/(execute|requests|input).*|mcp)$"  # code over HTTP


@asynccontextmanager
async def in_process(**options: Any) -> AsyncIterator[TestClient[Any, Any]]:
    """The whole app in this test's event loop, on 127.0.0.1 and an ephemeral port, its start-up and
    shutdown run as the server runs them; a subprocess only where the command line or signals matter."""
    defaults: dict[str, Any] = {"token": "test-token", "pool_size": 0, "proxy_entry_points": False}
    app = build_app(Settings(**{**defaults, **options}))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


@dataclass
class LocalServer(Address):
    """The whole app in this test's event loop on 127.0.0.1 and an ephemeral port, used as a
    Server is (url, headers, its log lines in stderr); see serving()."""

    url: str
    token: str
    stderr: list[str] = field(default_factory=list)


class _Lines(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self.lines = lines
        self.setFormatter(logging.Formatter(TEXT_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + "\n")


@asynccontextmanager
async def serving(**options: Any) -> AsyncIterator[LocalServer]:
    """Portico in-process, served on a real socket with its start-up and staged shutdown, for
    tests that talk to it as clients do (aiohttp sessions, WebSockets, KernelClient) but need no
    command line or signals; Portico's and aiohttp's log records (access lines, errors) are kept
    as the server's lines."""
    defaults: dict[str, Any] = {"token": "test-token", "pool_size": 0, "proxy_entry_points": False}
    settings = Settings(**{**defaults, **options})
    local = LocalServer("", settings.token)
    handler = _Lines(local.stderr)
    loggers = [logging.getLogger(name) for name in ("portico", "aiohttp.access", "aiohttp.server")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    runner = None
    try:
        runner = app_runner(settings)  # what building the app logs is the server's too
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        local.url = f"http://127.0.0.1:{listening_port(site, 0)}{settings.base_url}"
        yield local
    finally:
        if runner is not None:
            await runner.cleanup()
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


async def eventually(check: Callable[[], Awaitable[bool] | bool], what: str, timeout: float = 30) -> None:
    """Poll check (a function, or a coroutine function) until it holds: the one way tests wait for
    a state.  The deadline is for a stall (a busy machine is only slower)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                held = check()
                if not isinstance(held, bool):
                    held = await held
                if held:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"stalled: {what} did not happen within {timeout} s") from None
