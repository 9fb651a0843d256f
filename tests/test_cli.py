"""The command line: start-up errors, signals and shutdown, TLS, the README's commands."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from portico import settings
from portico_testing import KernelClient, Server, eventually, start_kernel, start_server, stdout_of

ROOT = Path(__file__).resolve().parent.parent


def portico(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portico", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.mark.parametrize(
    "args,env,expected",
    [
        (["--no-such-flag"], {}, "unrecognized arguments: --no-such-flag"),
        (["--port", "abc"], {}, "option port expects a whole number"),
        (["--port", "-5"], {}, "option port must be at least 0"),
        (["--log-level", "loud"], {}, "option log_level must be one of"),
        (["--allow-origin-pat", "("], {}, "allow_origin_pat is not a valid regular expression"),
        (["--certfile", "x.pem"], {}, "certfile and keyfile go together"),
        (["--root-dir", "/no/such/dir"], {}, "root_dir: /no/such/dir is not a directory"),
        ([], {"PORTICO_PORTT": "1"}, "unknown environment variable PORTICO_PORTT"),
        ([], {"PORTICO_AUTORESTART": "maybe"}, "option autorestart expects true or false"),
        (["--config", "/no/such.toml"], {}, "config file /no/such.toml"),
    ],
)
def test_bad_options_stop_the_start_with_one_line(args: list[str], env: dict[str, str], expected: str) -> None:
    result = portico(*args, env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert lines[0].startswith("portico: ")


def test_toml_config_unknown_key_and_precedence(tmp_path: Path) -> None:
    config = tmp_path / "portico.toml"
    config.write_text('max_kernels = 3\nbase_url = "/toml"\nlist_kernels = false\n')
    s = settings.load({"config": str(config), "base_url": "/cli"}, environ={"PORTICO_MAX_KERNELS": "4"})
    assert (s.max_kernels, s.base_url, s.list_kernels) == (4, "/cli/", False)
    config.write_text("max_kernel = 3\n")
    result = portico("--config", str(config))
    assert "unknown option 'max_kernel'" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    config.write_text("port = [\n")
    assert "is not valid TOML" in portico("--config", str(config)).stderr


def test_help_lists_every_option_and_the_readme_table_matches() -> None:
    out = portico("--help").stdout
    for name in settings.OPTIONS:
        assert settings.flag(name) in out
        assert settings.env_var(name) in " ".join(out.split())
    readme = (ROOT / "README.md").read_text()
    assert settings.markdown_table() in readme, "regenerate the table: portico --help-options-markdown"


def test_port_in_use_is_a_clear_error() -> None:
    srv = start_server()
    try:
        port = srv.url.split(":")[2].split("/")[0]
        result = portico("--port", port)
        assert result.returncode != 0 and f"cannot listen on 127.0.0.1:{port}" in result.stderr
    finally:
        srv.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_right_after_start_still_cleans_up(sig: int) -> None:
    srv = start_server("--pool-size", "2")  # warm kernels are starting when the signal comes
    assert srv.stop(sig) == 0
    assert "shutdown complete" in "".join(srv.stderr)
    assert kernels_of(srv.proc.pid) == []


def kernels_of(server_pid: int) -> list[int]:
    """Live processes started by that server's kernel launcher (jupyter_client sets JPY_PARENT_PID)."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if f"JPY_PARENT_PID={server_pid}\0".encode() in environ.read_bytes() and alive(int(environ.parent.name)):
                found.append(int(environ.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_no_kernel_or_kernel_child_outlives_the_server(http: aiohttp.ClientSession, sig: int) -> None:
    srv = start_server()
    pids = []
    clients = []
    for _ in range(3):
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        clients.append(client)
        _, out = await client.execute(
            "import os, subprocess; p = subprocess.Popen(['sleep', '600']); print(os.getpid(), p.pid)"
        )
        pids += [int(x) for x in stdout_of(out).split()]
    busy = await clients[0].request("execute_request", {"code": "import time; time.sleep(600)"})
    assert busy and all(alive(p) for p in pids)
    assert srv.stop(sig, timeout=30) == 0
    for client in clients:
        await asyncio.wait_for(client.closed.wait(), 5)
    await eventually(lambda: not [p for p in pids if alive(p)], "every kernel's end")
    assert kernels_of(srv.proc.pid) == []
    log = "".join(srv.stderr)
    assert "shutdown complete" in log


async def test_tls(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    srv = start_server("--certfile", str(cert), "--keyfile", str(key))
    try:
        assert srv.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(cert))
        async with http.get(srv.url + "api", headers=srv.headers, ssl=ctx) as r:
            assert r.status == 200
        kid = await start_kernel_tls(http, srv.url, srv.headers, ctx)
        ws = await http.ws_connect(f"wss{srv.url[5:]}api/kernels/{kid}/channels", headers=srv.headers, ssl=ctx)
        await ws.close()
        with pytest.raises(aiohttp.ClientConnectorError):
            async with http.get(srv.url + "api", headers=srv.headers):
                pass  # an untrusted certificate is refused by default
    finally:
        srv.stop()


async def start_kernel_tls(http: aiohttp.ClientSession, url: str, headers: dict[str, str], ctx: ssl.SSLContext) -> str:
    async with http.post(url + "api/kernels", json={}, headers=headers, ssl=ctx) as r:
        assert r.status == 201
        return str((await r.json())["id"])


async def test_disable_auth_warns_loudly_and_opens(http: aiohttp.ClientSession) -> None:
    srv = start_server("--disable-auth", token=None)
    try:
        async with http.get(srv.url + "api/kernels") as r:
            assert r.status == 200
        assert "token=" not in srv.url
    finally:
        srv.stop()
    assert any("AUTHENTICATION IS DISABLED" in line for line in srv.stderr)


async def test_generated_token_is_printed_and_required(http: aiohttp.ClientSession) -> None:
    srv = start_server(token=None)
    try:
        assert len(srv.token) >= 32
        async with http.get(srv.url + "api/kernels") as r:
            assert r.status == 401
        async with http.get(srv.url + "api/kernels", headers=srv.headers) as r:
            assert r.status == 200
    finally:
        srv.stop()


def test_readme_run_command_prints_the_url_with_a_token() -> None:
    readme = (ROOT / "README.md").read_text()
    run = re.search(r"^(scripts/run)$", readme, re.M)
    assert run, "the README's run command moved"
    proc = subprocess.Popen(
        [str(ROOT / run.group(1)), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert re.search(r"serving at http://127\.0\.0\.1:\d+/\?token=[0-9a-f]{48}$", line.strip()), line
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stdout is not None
        proc.stdout.close()


def test_readme_python_example_runs(subprocess_server: Server) -> None:
    server = subprocess_server
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S)
    assert code, "the README's Python example moved"
    source = code.group(1).replace('"http://127.0.0.1:8888"', repr(server.url.rstrip("/")))
    source = source.replace('"token secret"', repr(f"token {server.token}"))
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\n"


async def test_tls_client_certificates(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp_path)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
    )
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
    )
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr", "-subj", "/CN=c")
    openssl(
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.pem",
        "-days",
        "1",
    )
    srv = start_server(
        "--certfile",
        str(tmp_path / "server.pem"),
        "--keyfile",
        str(tmp_path / "server.key"),
        "--client-ca",
        str(tmp_path / "ca.pem"),
    )
    try:
        trusting = ssl.create_default_context(cafile=str(tmp_path / "server.pem"))
        with pytest.raises(aiohttp.ClientError):
            async with http.get(srv.url + "api", headers=srv.headers, ssl=trusting) as r:
                await r.read()
        trusting.load_cert_chain(str(tmp_path / "client.pem"), str(tmp_path / "client.key"))
        async with http.get(srv.url + "api", headers=srv.headers, ssl=trusting) as r:
            assert r.status == 200
    finally:
        srv.stop()
