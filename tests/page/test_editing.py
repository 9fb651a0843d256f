"""The editor asks the kernel (Tab completes, Shift+Tab documents), command mode has JupyterLab's
keys, and the kernel picker changes the notebook's kernel; in Chromium, against real kernels."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.async_api import BrowserContext, Page, expect

from portico_browser import Errors, browser_context, logged_in, open_notebook, run_cell
from portico_testing import Server, start_server, write_notebook

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("editing")


@pytest.fixture(scope="module")
def srv(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    share = tmp_path_factory.mktemp("share")
    alt = share / "kernels" / "python3-alt"
    alt.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (alt)",
        "language": "python",
        "env": {"WHICH_KERNEL": "the alt one"},
    }
    (alt / "kernel.json").write_text(json.dumps(spec))
    server = start_server("--root-dir", str(root), env={"JUPYTER_PATH": str(share)})
    yield server
    server.stop()


@pytest.fixture
async def context(srv: Server) -> AsyncIterator[BrowserContext]:
    async with browser_context() as ctx:
        yield ctx


async def notebook(context: BrowserContext, srv: Server, root: Path, name: str, cells: list[str]) -> Page:
    write_notebook(root / name, cells)
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, name, errors)
    page.errors = errors  # type: ignore[attr-defined]
    return page


async def test_tab_completes_from_the_kernel_and_shift_tab_shows_its_documentation(
    context: BrowserContext, srv: Server, root: Path
) -> None:
    page = await notebook(context, srv, root, "complete.ipynb", ["import collections", ""])
    await page.get_by_role("button", name="Run all cells").click()
    await expect(page.locator(".cell").first.locator(".prompt")).to_have_text("[1]:")
    editor = page.locator(".cell").nth(1).locator(".cm-content")
    await editor.click()
    await page.keyboard.type("collections.Ord")
    await page.keyboard.press("Tab")
    options = page.locator(".cm-tooltip-autocomplete li")
    await expect(options.filter(has_text="OrderedDict")).to_have_count(1)
    await page.keyboard.press("Enter")
    await expect(editor).to_have_text("collections.OrderedDict")

    await page.keyboard.press("Control+a")
    await page.keyboard.type("len(")
    await page.keyboard.press("Shift+Tab")
    doc = page.locator(".cell").nth(1).get_by_role("note", name="Documentation")
    await expect(doc).to_contain_text("Return the number of items in a container")
    await page.keyboard.type("x")  # the next edit puts it away
    await expect(doc).to_be_hidden()

    await page.keyboard.press("Control+a")
    await page.keyboard.type("x = 1")
    await page.keyboard.press("Home")
    await page.keyboard.press("Tab")  # with nothing before the cursor, Tab indents
    await expect(editor).to_have_text("    x = 1")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_command_mode_keys(context: BrowserContext, srv: Server, root: Path) -> None:
    page = await notebook(context, srv, root, "command.ipynb", ["first = 1", "second = 2"])
    cells = page.locator(".cell")
    await cells.nth(0).locator(".cm-content").click()
    await page.keyboard.press("Escape")
    await expect(cells.nth(0)).to_be_focused()
    await page.keyboard.press("b")  # a cell below, selected, still in command mode
    await expect(cells).to_have_count(3)
    await expect(cells.nth(1)).to_be_focused()
    await page.keyboard.press("m")
    await expect(cells.nth(1)).to_have_attribute("data-kind", "markdown")
    await page.keyboard.press("y")
    await expect(cells.nth(1)).to_have_attribute("data-kind", "code")
    await page.keyboard.press("a")  # and one above it
    await expect(cells).to_have_count(4)
    await expect(cells.nth(1)).to_be_focused()
    await page.keyboard.press("d")
    await page.keyboard.press("d")
    await expect(cells).to_have_count(3)
    await page.keyboard.press("ArrowUp")
    await expect(cells.nth(0)).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("ArrowDown")
    await expect(cells.nth(2)).to_be_focused()
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Shift+Enter")  # runs the first cell and moves on
    await expect(cells.nth(0).locator(".prompt")).to_have_text("[1]:")
    await page.keyboard.press("Escape")
    await page.keyboard.press("Enter")  # back to editing the cell it moved to
    await expect(cells.nth(1).locator(".cm-content")).to_be_focused()
    await page.keyboard.type("third = 3")
    await page.keyboard.press("Escape")
    await page.keyboard.press("Control+Enter")
    await expect(cells.nth(1).locator(".prompt")).to_have_text("[2]:")
    assert page.errors == []  # type: ignore[attr-defined]


async def test_command_mode_copies_cuts_pastes_and_undeletes(context: BrowserContext, srv: Server, root: Path) -> None:
    page = await notebook(context, srv, root, "clipboard.ipynb", ["one = 1", "two = 2", "three = 3"])
    cells = page.locator(".cell")
    sources = cells.locator(".cm-content")
    await sources.nth(0).click()
    await page.keyboard.press("Escape")
    await page.keyboard.press("c")
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("v")  # below the second: one, two, one, three
    await expect(sources).to_have_text(["one = 1", "two = 2", "one = 1", "three = 3"])
    await expect(cells.nth(2)).to_be_focused()
    await page.keyboard.press("ArrowDown")
    await page.keyboard.press("x")  # three cut: one, two, one
    await expect(sources).to_have_text(["one = 1", "two = 2", "one = 1"])
    await expect(cells.nth(2)).to_be_focused()  # the cell after the cut one, here the last
    await page.keyboard.press("ArrowUp")
    await page.keyboard.press("Shift+V")  # above two: one, three, two, one
    await expect(sources).to_have_text(["one = 1", "three = 3", "two = 2", "one = 1"])
    await page.keyboard.press("d")
    await page.keyboard.press("d")
    await expect(sources).to_have_text(["one = 1", "two = 2", "one = 1"])
    await page.keyboard.press("z")  # the deleted cell comes back where it was
    await expect(sources).to_have_text(["one = 1", "three = 3", "two = 2", "one = 1"])
    ids = await cells.evaluate_all("nodes => nodes.map(n => n.dataset.cellId)")
    assert len(set(ids)) == 4, ids  # a pasted cell is a new cell
    await page.keyboard.press("Control+s")
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "), timeout=10000)
    saved = nbformat.read(root / "clipboard.ipynb", as_version=4)
    assert ["".join(c.source) for c in saved.cells] == ["one = 1", "three = 3", "two = 2", "one = 1"]
    assert page.errors == []  # type: ignore[attr-defined]


async def test_the_kernel_picker_changes_the_notebooks_kernel(context: BrowserContext, srv: Server, root: Path) -> None:
    page = await notebook(context, srv, root, "picker.ipynb", [""])
    picker = page.get_by_role("combobox", name="Kernel")
    await expect(picker).to_have_value("python3")
    await picker.select_option(label="Python (alt)")
    await expect(page.locator(".kernel-status")).to_have_text("Python (alt): idle", timeout=30000)
    cell = await run_cell(page, "import os; print(os.environ.get('WHICH_KERNEL'))")
    await expect(cell.locator(".output .stream")).to_have_text("the alt one\n")
    await page.keyboard.press("Control+s")
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "), timeout=10000)
    saved = nbformat.read(root / "picker.ipynb", as_version=4)
    assert saved.metadata.kernelspec.name == "python3-alt"
    assert saved.metadata.kernelspec.display_name == "Python (alt)"
    assert page.errors == []  # type: ignore[attr-defined]
