"""ipywidgets 8 in the page over the kernel's comms, both ways, in Chromium with real kernels."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.async_api import BrowserContext, expect

from portico_browser import Errors, browser_context, logged_in, open_notebook, run_cell
from portico_testing import Server, start_server, write_notebook

pytestmark = pytest.mark.timeout(180)
STATE = "application/vnd.jupyter.widget-state+json"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("widgets")


@pytest.fixture(scope="module")
def srv(root: Path) -> Iterator[Server]:
    server = start_server("--root-dir", str(root))
    yield server
    server.stop()


@pytest.fixture
async def context(srv: Server) -> AsyncIterator[BrowserContext]:
    async with browser_context() as ctx:
        yield ctx


async def test_a_slider_works_both_ways_interact_works_and_the_state_is_saved(
    context: BrowserContext, srv: Server, root: Path
) -> None:
    write_notebook(root / "w.ipynb", [""])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "w.ipynb", errors)
    cell = await run_cell(page, "import ipywidgets as w\ns = w.IntSlider(value=3, max=10)\ns")
    slider = cell.locator(".output .widget-slider")
    await expect(slider).to_be_visible(timeout=30000)
    readout = slider.locator(".widget-readout")
    await expect(readout).to_have_text("3")

    await slider.locator(".noUi-handle").focus()
    await page.keyboard.press("ArrowRight")
    await expect(readout).to_have_text("4")
    cell = await run_cell(page, "print(s.value)")
    await expect(cell.locator(".output .stream")).to_have_text("4\n")

    await run_cell(page, "s.value = 7")
    await expect(readout).to_have_text("7")

    cell = await run_cell(page, "from ipywidgets import interact\n_ = interact(lambda x: print(x * 2), x=5)")
    await expect(cell.locator(".output .widget-output .stream")).to_have_text("10\n", timeout=30000)
    await cell.locator(".widget-slider .noUi-handle").focus()
    await page.keyboard.press("ArrowRight")
    await expect(cell.locator(".output .widget-output .stream")).to_have_text("12\n")

    await page.keyboard.press("Control+s")
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "), timeout=10000)
    saved = nbformat.read(root / "w.ipynb", as_version=4)
    states = saved.metadata.widgets[STATE]["state"]
    sliders = [m for m in states.values() if m["model_name"] == "IntSliderModel"]
    assert any(m["state"].get("value") == 7 for m in sliders), sliders
    view = saved.cells[0].outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]
    assert view["model_id"] in states

    again = await open_notebook(context, srv, "w.ipynb", errors)  # a second page on the same kernel
    slider = again.locator(".cell").first.locator(".output .widget-slider")
    await expect(slider.locator(".widget-readout")).to_have_text("7", timeout=30000)
    assert errors == []


async def test_an_html_widget_is_sanitized(context: BrowserContext, srv: Server, root: Path) -> None:
    write_notebook(root / "html.ipynb", [""])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "html.ipynb", errors)
    code = (
        "import ipywidgets as w\n"
        "w.HTML('<b>bold</b><img src=x onerror=\"document.title=1\"><script>document.title=2</script>')"
    )
    cell = await run_cell(page, code)
    html = cell.locator(".output .widget-html-content")
    await expect(html.locator("b")).to_have_text("bold", timeout=30000)
    assert await html.locator("script").count() == 0
    assert await html.locator("img").get_attribute("onerror") is None
    assert await page.title() == "html.ipynb – Portico"
    # Chromium reports the policy refusing the inline handler while DOMPurify parses the value (a
    # text/html output gives the same line); the handler never runs and the page has none.
    assert [e for e in errors if "Content Security Policy" not in e] == []
