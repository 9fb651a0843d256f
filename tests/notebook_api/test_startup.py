"""Every way a notebook API can fail to start: one line naming the problem, and no server."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

from portico_testing import processes_with, start_server, write_notebook


def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portico", "--port", "0", "--pool-size", "0", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def failure(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0 and "serving at" not in result.stdout
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("portico: ")
    return last


@pytest.mark.parametrize(
    "cells, kernel, problem",
    [
        (["print(1)"], "python3", "api.ipynb has no endpoints"),
        (["# GET /a/:\n1"], "python3", "code cell 1: bad path '/a/:'"),
        (["# GET /a\n1"], "no-such-kernel", "needs kernel 'no-such-kernel', which is not installed"),
        (["# GET /api/kernels\n1"], "python3", "collides with Portico's own /api routes"),
        (["# GET /\n1"], "python3", "collides with the browser page's / routes; mount the notebook under a prefix"),
        (["# POST /login\n1"], "python3", "the browser page's /login routes"),
    ],
)
def test_bad_notebooks_stop_the_start(tmp_path: Path, cells: list[str], kernel: str, problem: str) -> None:
    write_notebook(tmp_path / "api.ipynb", cells, kernel=kernel)
    assert problem in failure(start("--notebook", "api.ipynb", cwd=tmp_path))


def test_missing_or_unreadable_files(tmp_path: Path) -> None:
    assert "notebook nope.ipynb: no such file" in failure(start("--notebook", "nope.ipynb", cwd=tmp_path))
    (tmp_path / "x.ipynb").write_text("{")
    assert "x.ipynb is not a readable notebook" in failure(start("--notebook", "x.ipynb", cwd=tmp_path))


def test_two_notebooks_need_two_prefixes(tmp_path: Path) -> None:
    write_notebook(tmp_path / "a.ipynb", ["# GET /a\n1"])
    write_notebook(tmp_path / "b.ipynb", ["# GET /b\n1"])
    assert "two notebooks mount at /" in failure(start("--notebook", "a.ipynb,b.ipynb", cwd=tmp_path))


def test_a_failing_seed_cell_stops_the_start_and_leaves_no_kernel(tmp_path: Path) -> None:
    write_notebook(tmp_path / "api.ipynb", ["x = 1", "# GET /a\nprint(x)", "import no_such_module_here"])
    marker = uuid.uuid4().hex
    line = failure(
        start(
            "--notebook",
            "api.ipynb",
            "--notebook-pool-min",
            "2",
            "--kernel-env-inherit",
            "MARKER",
            cwd=tmp_path,
            env={"MARKER": marker},
        )
    )
    assert "code cell 3: ModuleNotFoundError: No module named 'no_such_module_here'" in line
    assert processes_with(f"MARKER={marker}") == []


def test_a_route_a_proxied_server_takes_stops_the_start(tmp_path: Path) -> None:
    write_notebook(tmp_path / "api.ipynb", ["# GET /app/x\n1"])
    servers = '{"app": {"port": 9}}'
    assert "collides with a proxied server's /app routes" in failure(
        start("--notebook", "api.ipynb", "--servers", servers, cwd=tmp_path)
    )
    assert "the prefix /app/ is a proxied server's" in failure(
        start("--notebook", "/app=api.ipynb", "--servers", servers, cwd=tmp_path)
    )


def test_with_the_page_off_a_root_notebook_may_take_the_root(tmp_path: Path) -> None:
    write_notebook(tmp_path / "api.ipynb", ["# GET /\nprint('the notebook answers')"])
    assert "(or turn the page off: --page false)" in failure(start("--notebook", "api.ipynb", cwd=tmp_path))
    server = start_server("--notebook", str(tmp_path / "api.ipynb"), "--page", "false")
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url, headers=server.headers)) as r:
            assert r.read() == b"the notebook answers\n"
    finally:
        server.stop()
