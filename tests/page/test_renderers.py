"""Rich outputs in the page, drawn by the libraries the page loads only when a notebook needs them:
plotly.js, vega-embed, KaTeX; and matplotlib's inline PNG. Real kernels make every output."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.async_api import BrowserContext, expect

from portico_browser import Errors, browser_context, logged_in, open_notebook
from portico_testing import Server, start_server

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
pytestmark = pytest.mark.timeout(180)

VEGA_LITE = {
    "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
    "data": {"values": [{"a": "A", "b": 28}, {"a": "B", "b": 55}, {"a": "C", "b": 43}]},
    "mark": "point",
    "encoding": {"x": {"field": "a", "type": "nominal"}, "y": {"field": "b", "type": "quantitative"}},
}
CELLS = [
    ("markdown", "Euler: $e^{i\\pi}+1=0$, and `$not math$` in code."),
    (
        "code",
        'import plotly.express as px, plotly.io as pio\npio.renderers.default = "plotly_mimetype"\n'
        "px.scatter(x=[0, 1, 2, 3, 4], y=[0, 1, 4, 9, 16])",
    ),
    (
        "code",
        "from IPython.display import display\n"
        f'display({{"application/vnd.vegalite.v5+json": {json.dumps(VEGA_LITE)}}}, raw=True)',
    ),
    ("code", 'from IPython.display import Math\nMath(r"\\frac{a}{b}")'),
    ("code", "%matplotlib inline\nimport matplotlib.pyplot as plt\nplt.plot([1, 3, 2])\nplt.show()"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("renderers")
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    for kind, source in CELLS:
        nb.cells.append((nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell)(source))
    nbformat.write(nb, root / "rich.ipynb")
    server = start_server("--root-dir", str(root))
    yield server
    server.stop()


@pytest.fixture
async def context(srv: Server) -> AsyncIterator[BrowserContext]:
    async with browser_context(viewport={"width": 1100, "height": 2400}) as ctx:
        yield ctx


async def test_plotly_vega_math_and_matplotlib_render(context: BrowserContext, srv: Server) -> None:
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "rich.ipynb", errors)
    cells = page.locator(".cell")
    await expect(cells).to_have_count(len(CELLS))

    markdown = cells.nth(0).locator(".rendered")
    await expect(markdown.locator(".katex")).to_have_count(1)
    assert await markdown.locator(".katex annotation").text_content() == "e^{i\\pi}+1=0"
    await expect(markdown.locator("code")).to_have_text("$not math$")  # math in code stays code

    await page.get_by_role("button", name="Run all cells").click()
    plot = cells.nth(1).locator(".output .plotly-figure")
    await expect(plot.locator(".scatterlayer .point")).to_have_count(5, timeout=30000)
    vega = cells.nth(2).locator(".output .vega-figure svg")
    await expect(vega.locator(".mark-symbol path")).to_have_count(3, timeout=30000)
    math = cells.nth(3).locator(".output .katex")
    await expect(math.locator(".mfrac")).to_have_count(1, timeout=30000)
    assert await math.locator("annotation").text_content() == "\\displaystyle \\frac{a}{b}"
    image = cells.nth(4).locator('.output img[alt="PNG output"]')
    await expect(image).to_be_visible(timeout=30000)
    assert await image.evaluate("img => img.naturalWidth") > 100

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.set_viewport_size({"width": 1100, "height": 1800})
    await page.screenshot(path=str(SCREENSHOTS / "renderers.png"))
    assert errors == []


async def test_the_first_load_carries_no_heavy_renderer(context: BrowserContext, srv: Server) -> None:
    """The chunks (plotly.js alone is 4.8 MB) come only with an output that needs them."""
    static = ROOT / "src" / "portico" / "page" / "static"
    sizes = {p.name: p.stat().st_size for p in static.glob("chunk-*.js")}
    assert max(sizes.values()) > 4_000_000, "plotly.js is a chunk of its own"
    errors = Errors()
    page = errors.watch(await context.new_page())
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url.split("?")[0].rsplit("/", 1)[-1]))
    await page.goto(srv.url + f"?token={srv.token}")
    await expect(page.get_by_role("heading", name="Launcher")).to_be_visible()
    await page.wait_for_load_state("networkidle")
    heavy = [name for name in requested if sizes.get(name, 0) > 200_000]  # (the code shared with them: ~110 KB)
    assert heavy == [], f"the launcher loaded {heavy}"
    assert errors == []
