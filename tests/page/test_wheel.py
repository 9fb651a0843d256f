"""The page ships inside the package: the sdist carries its sources, building a wheel from that sdist
builds it, and that wheel, installed into a fresh venv on a machine without Node, serves it.

The fresh venv gets Portico only from the wheel; its dependencies come from the project's venv
(a .pth line), so the test needs no index and proves what it is about: the built page is in the wheel.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import pytest
from playwright.async_api import expect

from portico_browser import Errors, chromium, logged_in, open_notebook, run_cell
from portico_testing import start_server, write_notebook

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)

# What scripts/build-page runs before it looks for Node, and nothing else: a PATH with no node on it.
SHELL_TOOLS = ("bash", "cat", "sha256sum", "cut", "find", "sort", "xargs", "dirname", "mkdir", "rm", "mv", "gzip")


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, **kw)  # type: ignore[call-overload]


def without_node(tmp: Path) -> str:
    tools = tmp / "tools"
    tools.mkdir()
    for name in SHELL_TOOLS:
        found = shutil.which(name)
        assert found, name
        (tools / name).symlink_to(found)
    path = f"{Path(sys.executable).parent}{os.pathsep}{tools}"
    assert shutil.which("node", path=path) is None and shutil.which("npm", path=path) is None
    return path


def sdist(tmp: Path) -> Path:
    built = run([sys.executable, "-m", "build", "--sdist", "--no-isolation", "-o", str(tmp / "dist"), str(ROOT)])
    assert built.returncode == 0, built.stderr[-3000:]
    (archive,) = (tmp / "dist").glob("portico-*.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp / "unpacked", filter="data")
    assert any(n.endswith("/web/src/main.js") for n in names) and any(n.endswith("/scripts/build-page") for n in names)
    assert not any("/page/static/" in n for n in names), "the sdist builds the page; it carries no built copy"
    (unpacked,) = (tmp / "unpacked").iterdir()
    return unpacked


def test_an_sdist_without_node_says_what_building_its_page_needs(tmp_path: Path) -> None:
    unpacked = sdist(tmp_path)
    env = {**os.environ, "PATH": without_node(tmp_path)}
    built = run([sys.executable, "-m", "build", "--wheel", "--no-isolation", str(unpacked)], env=env)
    assert built.returncode != 0
    assert "needs Node.js 18 or later and npm on PATH" in built.stderr + built.stdout


async def test_a_wheel_built_from_the_sdist_serves_the_page_from_a_fresh_venv_without_node(tmp_path: Path) -> None:
    unpacked = sdist(tmp_path)
    # The npm packages of the lock file the sdist carries, as `npm ci` would install them there (the
    # checkout's, stamped with that lock): the build then runs esbuild over the sdist's own sources.
    (unpacked / "web" / "node_modules").symlink_to(ROOT / "web" / "node_modules")
    wheels = tmp_path / "wheels"
    built = run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", str(wheels), str(unpacked)])
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    (wheel,) = wheels.glob("portico-*.whl")

    venv = tmp_path / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)]).returncode == 0
    python = str(venv / "bin" / "python")
    installed = run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", str(wheel)])
    assert installed.returncode == 0, installed.stderr[-3000:]
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    (Path(purelib) / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    where = run([python, "-c", "import portico.page.routes as r; print(r.STATIC_DIR)"], cwd=tmp_path)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    assert (Path(where.stdout.strip()) / "app.js").is_file()

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "hello.ipynb", [""])
    env = {"PATH": without_node(tmp_path)}
    srv = start_server("--root-dir", str(notebooks), python=python, cwd=str(tmp_path), env=env)
    try:
        errors = Errors()
        async with chromium() as browser:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await logged_in(context, srv, errors)
            await expect(page.get_by_role("button", name=re.compile(r"New Python 3.* notebook"))).to_be_visible()
            page = await open_notebook(context, srv, "hello.ipynb", errors)
            cell = await run_cell(page, "print(6 * 7)")
            await expect(cell.locator(".output .stream.stdout")).to_have_text("42\n")
            await context.close()
        assert errors == []
    finally:
        srv.stop()
