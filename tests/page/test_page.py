"""The browser page in real headless Chromium (Debian's, driven by Playwright), against a real Portico.

Screenshots of the launcher and of a notebook with rich outputs go to artifacts/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import nbformat
import pytest
from playwright.async_api import BrowserContext, Page, expect

from portico_browser import Errors, chromium, logged_in, open_notebook, run_cell
from portico_testing import Server, start_server

SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"  # kept by the test run
ROOT = Path(__file__).resolve().parents[2]
ICON = ROOT / "tests" / "proxy" / "icon.svg"
EXAMPLE_API = ROOT / "examples" / "hello_api.ipynb"
PNG_3X2 = "iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAIAAAASFvFNAAAAEElEQVR4nGP4z8AAQQxwFgBB0gX7h/C5SAAAAABJRU5ErkJggg=="

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("page")
    (root / "index.html").write_text("<h1>served by the proxied app</h1>")
    return root


@pytest.fixture(scope="module")
def srv(root: Path) -> Iterator[Server]:
    servers = {
        "statics": {
            "command": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root), "{port}"],
            "launcher_entry": {"title": "Static files", "icon_path": str(ICON)},
        }
    }
    server = start_server(
        "--root-dir", str(root), "--servers", json.dumps(servers), "--notebook", f"/hello={EXAMPLE_API}"
    )
    yield server
    server.stop()


@pytest.fixture
async def context(srv: Server) -> AsyncIterator[BrowserContext]:
    async with chromium() as browser:
        ctx = await browser.new_context(viewport={"width": 1280, "height": 900})
        yield ctx
        await ctx.close()


def write_notebook(root: Path, name: str, cells: list[dict[str, Any]]) -> None:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    for c in cells:
        maker = nbformat.v4.new_markdown_cell if c.get("kind") == "markdown" else nbformat.v4.new_code_cell
        cell = maker(c["source"])
        if "id" in c:
            cell["id"] = c["id"]
        nb.cells.append(cell)
    nbformat.write(nb, root / name)


async def unlabelled_controls(page: Page) -> list[str]:
    return list(
        await page.evaluate("""() => [...document.querySelectorAll('button, select, input, a[href]')]
        .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim() || (e.labels && e.labels.length)))
        .map(e => e.outerHTML.slice(0, 120))""")
    )


async def test_launcher_to_notebook_outputs_save_and_reload(context: BrowserContext, srv: Server, root: Path) -> None:
    errors = Errors()
    page = await logged_in(context, srv, errors)
    await page.get_by_role("button", name=re.compile(r"New Python 3.* notebook")).click()
    await page.wait_for_url(re.compile(r"/notebooks/Untitled\d*\.ipynb$"))
    path = page.url.split("/notebooks/")[1]
    await expect(page.locator(".kernel-status")).to_have_attribute("data-state", "idle", timeout=30000)
    await page.locator(".cell .cm-content").first.click()

    cell = await run_cell(page, 'print("hi")')
    await expect(cell.locator(".output .stream.stdout")).to_have_text("hi\n")
    cell = await run_cell(page, "6*7")
    await expect(cell.locator(".output")).to_have_text("42")
    await expect(cell.locator(".prompt")).to_have_text("[2]:")
    cell = await run_cell(
        page, f'import base64; from IPython.display import Image; Image(data=base64.b64decode("{PNG_3X2}"))'
    )
    image = cell.locator('.output img[alt="PNG output"]')
    await expect(image).to_be_visible()
    assert await image.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [3, 2]
    cell = await run_cell(page, "1/0")
    await expect(cell.locator(".output .error")).to_contain_text("ZeroDivisionError")
    assert await cell.locator(".output .error span[class*='ansi-']").count() > 0  # the traceback keeps its colours

    cell = await run_cell(page, 'name = input("Your name: "); print("hello", name)', wait=False)
    field = cell.get_by_role("textbox", name="Your name:")
    await expect(field).to_be_focused()
    await field.fill("Ada")
    await field.press("Enter")
    await expect(cell.locator(".output .stream")).to_have_text("hello Ada\n")

    cell = await run_cell(page, "import time; time.sleep(30)", wait=False)
    await expect(page.locator(".kernel-status")).to_have_attribute("data-state", "busy")
    await page.get_by_role("button", name="Interrupt the kernel").click()
    await expect(cell.locator(".output .error")).to_contain_text("KeyboardInterrupt", timeout=10000)
    await expect(page.locator(".kernel-status")).to_have_attribute("data-state", "idle")

    await page.get_by_role("button", name="Save", exact=True).click()
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "))
    on_disk = nbformat.read(root / path, as_version=4)
    nbformat.validate(on_disk)
    assert [c.source for c in on_disk.cells][:6] == [
        'print("hi")',
        "6*7",
        on_disk.cells[2].source,
        "1/0",
        'name = input("Your name: "); print("hello", name)',
        "import time; time.sleep(30)",
    ]
    assert on_disk.cells[1].outputs[0]["data"]["text/plain"] == "42" and on_disk.cells[1].execution_count == 2
    assert on_disk.metadata.kernelspec.name == "python3" and on_disk.metadata.language_info.name == "python"

    await page.reload()
    await expect(page.locator(".kernel-status")).to_have_attribute("data-state", "idle", timeout=30000)
    cells = page.locator(".cell")
    await expect(cells.nth(0).locator(".output")).to_have_text("hi\n")
    await expect(cells.nth(1).locator(".output")).to_have_text("42")
    await expect(cells.nth(2).locator('.output img[alt="PNG output"]')).to_be_visible()
    await expect(cells.nth(3).locator(".output .error")).to_contain_text("ZeroDivisionError")
    await expect(cells.nth(4).locator(".output")).to_have_text("hello Ada\n")
    await expect(cells.nth(5).locator(".output .error")).to_contain_text("KeyboardInterrupt")
    assert await unlabelled_controls(page) == []
    assert errors == []


async def test_rich_outputs_render_by_mime_type(context: BrowserContext, srv: Server, root: Path) -> None:
    code = [
        "print('\\x1b[31mred\\x1b[0m and plain'); import sys; print('to stderr', file=sys.stderr)",
        "from IPython.display import Markdown, JSON, SVG, HTML, display; "
        "display(Markdown('## Heading\\n\\n*emphasis* and `code`'))",
        "display(JSON({'a': [1, 2], 'b': {'c': True}}))",
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="60" height="30">'
        '<rect width="60" height="30" fill="teal"/></svg>\'))',
        "display(HTML('<table><tr><th>x</th><th>y</th></tr><tr><td>1</td><td>2</td></tr></table>'))",
        "h = display('first', display_id=True); h.update('updated in place')",
        "from IPython.display import clear_output; print('gone'); clear_output(); print('kept')",
        "import time\nfor i in range(3):\n    clear_output(wait=True); print('tick', i); time.sleep(0.05)",
    ]
    write_notebook(
        root,
        "rich.ipynb",
        [{"source": "# Rich outputs\n\nEvery MIME type the page renders.", "kind": "markdown"}]
        + [{"source": c} for c in code],
    )
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "rich.ipynb", errors)
    await expect(page.locator(".cell").nth(0).locator(".rendered h1")).to_have_text("Rich outputs")
    await page.get_by_role("button", name="Run all cells").click()
    cells = page.locator(".cell")
    await expect(cells.nth(8).locator(".prompt")).to_have_text(re.compile(r"\[\d+\]:"), timeout=30000)
    await expect(cells.nth(1).locator(".stream.stdout .ansi-red-fg")).to_have_text("red")
    await expect(cells.nth(1).locator(".stream.stderr")).to_have_text("to stderr\n")
    await expect(cells.nth(2).locator(".markdown h2")).to_have_text("Heading")
    await expect(cells.nth(2).locator(".markdown em")).to_have_text("emphasis")
    assert json.loads(await cells.nth(3).locator("[data-mime='application/json'] pre").inner_text()) == {
        "a": [1, 2],
        "b": {"c": True},
    }
    assert await cells.nth(4).locator("img[alt='SVG output']").evaluate("img => img.naturalWidth") == 60
    await expect(cells.nth(5).locator("table td").first).to_have_text("1")
    await expect(cells.nth(6).locator(".output")).to_have_text("'updated in place'")
    await expect(cells.nth(7).locator(".output")).to_have_text("kept\n")
    await expect(cells.nth(8).locator(".output")).to_have_text("tick 2\n")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "notebook.png"), full_page=True)
    assert errors == []


async def test_html_and_svg_output_cannot_run_script(context: BrowserContext, srv: Server, root: Path) -> None:
    code = (
        "from IPython.display import HTML, SVG, Markdown, display\n"
        'display(HTML(\'<b id="bold">bold</b><img src="x" onerror="window.__xss=1"><script>window.__xss=2</script>'
        '<a href="javascript:window.__xss=5" id="jslink">link</a>\'))\n'
        'display(SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" onload="window.__xss=3">'
        '<script>window.__xss=4</script><rect width="10" height="10"/></svg>\'))\n'
        "display(Markdown('<img src=x onerror=\"window.__xss=6\"> **md**'))"
    )
    write_notebook(root, "xss.ipynb", [{"source": code}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "xss.ipynb", errors)
    await page.locator(".cell .cm-content").first.click()
    await page.keyboard.press("Shift+Enter")
    cell = page.locator(".cell").first
    await expect(cell.locator("#bold")).to_have_text("bold")
    await expect(cell.locator(".markdown strong")).to_have_text("md")
    await cell.locator("#jslink").click()
    await page.wait_for_timeout(500)  # time for an onerror or onload handler to have run, if one could
    assert await page.evaluate("window.__xss") is None
    assert await cell.locator("[onerror], [onload], script").count() == 0
    assert await cell.locator("#jslink").get_attribute("href") is None


async def test_a_second_page_sees_executions_from_the_first(context: BrowserContext, srv: Server, root: Path) -> None:
    write_notebook(
        root, "shared.ipynb", [{"source": "print('from A')", "id": "shared-1"}, {"source": "", "id": "shared-2"}]
    )
    errors = Errors()
    await logged_in(context, srv, errors)
    first = await open_notebook(context, srv, "shared.ipynb", errors)
    second = await open_notebook(context, srv, "shared.ipynb", errors)
    await first.locator(".cell .cm-content").first.click()
    await first.keyboard.press("Shift+Enter")
    seen = second.locator("[data-cell-id='shared-1']")
    await expect(seen.locator(".output")).to_have_text("from A\n")
    await expect(seen.locator(".prompt")).to_have_text("[1]:")
    # output as it happens, not when the execution ends; and a cell the second page does not have yet
    await first.keyboard.type("import time\nfor i in range(3): print('step', i, flush=True); time.sleep(1)")
    await first.keyboard.press("Shift+Enter")
    await expect(second.locator("[data-cell-id='shared-2'] .output")).to_have_text("step 0\n")
    await expect(second.locator("[data-cell-id='shared-2'] .prompt")).to_have_text("[*]:")
    await expect(second.locator("[data-cell-id='shared-2'] .output")).to_have_text("step 0\nstep 1\nstep 2\n")
    await first.keyboard.type("print('new cell')")
    await first.keyboard.press("Shift+Enter")
    await expect(second.locator(".cell").nth(2).locator(".output")).to_have_text("new cell\n")
    await expect(second.locator(".cell").nth(2).locator(".cm-content")).to_have_text("print('new cell')")
    assert errors == []


async def test_a_dropped_connection_is_shown_and_loses_no_output(
    context: BrowserContext, srv: Server, root: Path
) -> None:
    write_notebook(
        root, "drop.ipynb", [{"source": "import time\nfor i in range(10): print(i, flush=True); time.sleep(0.3)"}]
    )
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "drop.ipynb", errors)
    await page.locator(".cell .cm-content").first.click()
    await page.keyboard.press("Shift+Enter")
    output = page.locator(".cell").first.locator(".output")
    await expect(output).to_contain_text("1\n")
    # The socket drops as on a network failure (close code 1006, whatever was in flight lost): the
    # browser has no switch for that on a loopback socket, so the test takes @jupyterlab/services'
    # own path for it, which detaches the socket's handlers and closes it.
    await page.evaluate("""() => {
        window.__banners = [];
        const banner = document.querySelector('.banner');
        new MutationObserver(() => window.__banners.push(banner.textContent)).observe(banner, {childList: true});
        window.portico.kernel._onWSClose({code: 1006});
    }""")
    await expect(page.locator(".banner")).to_contain_text("Connection restored", timeout=20000)
    assert (await page.evaluate("window.__banners"))[0] == "Connection to the kernel lost: reconnecting…"
    await expect(output).to_have_text("".join(f"{i}\n" for i in range(10)), timeout=15000)
    assert [e for e in errors if "WebSocket" not in e] == []


async def test_launcher_lists_apps_and_kernels_and_opens_an_app(
    context: BrowserContext, srv: Server, root: Path
) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"token {srv.token}"}) as http:
        async with http.post(srv.url + "api/kernels", json={"name": "python3"}) as r:
            kernel = (await r.json())["id"]
    write_notebook(root, "listed.ipynb", [{"source": "1"}])
    errors = Errors()
    page = await logged_in(context, srv, errors)
    await expect(page.locator(f"tr[data-kernel-id='{kernel}']")).to_be_visible()
    await expect(page.get_by_role("link", name=re.compile("Static files"))).to_be_visible()
    await expect(page.get_by_role("link", name="listed.ipynb", exact=True)).to_be_visible()
    assert await page.get_by_role("link", name="OpenAPI spec").get_attribute("href") == "/hello/_api/spec/openapi.json"
    assert await page.locator("[data-app=statics] img").evaluate("img => img.naturalWidth") > 0  # the app's icon
    assert await unlabelled_controls(page) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "launcher.png"), full_page=True)
    await page.get_by_role("button", name=f"Shut down kernel {kernel[:8]}").click()
    await expect(page.locator(f"tr[data-kernel-id='{kernel}']")).to_have_count(0)
    async with context.expect_page() as opened:  # new_browser_tab, true by default as in jupyter-server-proxy
        await page.get_by_role("link", name=re.compile("Static files")).click()
    app = await opened.value
    await expect(app.get_by_role("heading", name="served by the proxied app")).to_be_visible(timeout=20000)
    assert app.url == srv.url + "statics/"
    assert errors == []


async def test_without_a_token_there_is_a_login_prompt_and_no_data(context: BrowserContext, srv: Server) -> None:
    page = await context.new_page()
    await page.goto(srv.url)
    await expect(page.get_by_label("Token")).to_be_visible()
    text = await page.content()
    assert "Launcher" not in text and "python3" not in text and "rich.ipynb" not in text
    await page.get_by_label("Token").fill("wrong")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("That token is not this server's.")
    await page.get_by_label("Token").fill(srv.token)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("heading", name="Launcher")).to_be_visible()


async def test_run_interrupt_and_save_with_the_keyboard_alone(context: BrowserContext, srv: Server, root: Path) -> None:
    write_notebook(root, "keys.ipynb", [{"source": ""}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "keys.ipynb", errors)

    async def tab_to(check: str, key: str = "Tab") -> None:
        for _ in range(40):
            await page.keyboard.press(key)
            if await page.evaluate(f"(() => {{ const e = document.activeElement; return {check}; }})()"):
                return
        raise AssertionError(f"{check} never got the focus with {key}")

    await tab_to("e.classList.contains('cm-content')")
    await page.keyboard.type("import time; time.sleep(30)")
    await page.keyboard.press("Shift+Enter")
    await expect(page.locator(".kernel-status")).to_have_attribute("data-state", "busy")
    await page.keyboard.press("Escape")  # out of the editor (command mode), where Tab moves the focus again
    await tab_to("e.getAttribute('aria-label') === 'Interrupt the kernel'", "Shift+Tab")
    await page.keyboard.press("Enter")
    await expect(page.locator(".cell").first.locator(".output .error")).to_contain_text(
        "KeyboardInterrupt", timeout=10000
    )
    await page.keyboard.press("Control+s")
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "))
    assert nbformat.read(root / "keys.ipynb", as_version=4).cells[0].source == "import time; time.sleep(30)"
    assert errors == []


async def test_cell_editing_and_autosave(context: BrowserContext, root: Path) -> None:
    write_notebook(root, "cells.ipynb", [{"source": "a = 1"}, {"source": "b = 2"}])
    own = start_server("--root-dir", str(root), "--autosave-interval", "1")
    try:
        errors = Errors()
        await logged_in(context, own, errors)
        page = await open_notebook(context, own, "cells.ipynb", errors)
        cells = page.locator(".cell")
        await cells.nth(0).locator(".cm-content").click()
        await page.get_by_role("button", name="Add a cell below").click()
        await page.keyboard.type("# Notes")
        await page.get_by_role("combobox", name="Cell type").select_option("markdown")
        await cells.nth(1).locator(".cm-content").click()
        await page.keyboard.press("Shift+Enter")  # renders the Markdown and moves on
        await expect(cells.nth(1).locator(".rendered h1")).to_have_text("Notes")
        await expect(cells.nth(2)).to_have_class(re.compile(r"\bactive\b"))
        await page.get_by_role("button", name="Move the cell up").click()  # b = 2 above the notes
        await cells.nth(0).locator(".cm-content").click()
        await page.get_by_role("button", name="Delete the cell").click()  # a = 1 goes
        await expect(cells).to_have_count(2)
        await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Autosaved "), timeout=10000)
        saved = nbformat.read(root / "cells.ipynb", as_version=4)
        assert [(c.cell_type, c.source) for c in saved.cells] == [("code", "b = 2"), ("markdown", "# Notes")]
        nbformat.validate(saved)
        assert errors == []
    finally:
        own.stop()


async def test_an_edit_made_while_a_cell_waits_to_run_is_kept(context: BrowserContext, srv: Server, root: Path) -> None:
    write_notebook(root, "queued.ipynb", [{"source": "import time; time.sleep(4)"}, {"source": "print('ran')"}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "queued.ipynb", errors)
    other = await open_notebook(context, srv, "queued.ipynb", errors)
    cells = page.locator(".cell")
    await cells.nth(0).locator(".cm-content").click()
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.press("Shift+Enter")  # the second cell, queued behind the sleep
    await cells.nth(1).locator(".cm-content").click()
    await page.keyboard.press("Control+End")
    await page.keyboard.insert_text("  # edited while queued")
    await expect(cells.nth(1).locator(".prompt")).to_have_text("[*]:")  # the edit was made while it waited
    await expect(cells.nth(1).locator(".output")).to_have_text("ran\n", timeout=15000)
    await expect(cells.nth(1).locator(".cm-content")).to_have_text("print('ran')  # edited while queued")
    await expect(other.locator(".cell").nth(1).locator(".cm-content")).to_have_text("print('ran')")  # what ran
    assert errors == []


async def test_the_journal_position_is_kept_per_kernel(context: BrowserContext, srv: Server, root: Path) -> None:
    """A second kernel's channels open at its own journal's start (since=now), never at the
    number the first kernel's journal had reached (its messages would be dropped as repeats)."""
    write_notebook(root, "two.ipynb", [{"source": "for i in range(5): print(i)"}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "two.ipynb", errors)
    await page.locator(".cell .cm-content").first.click()
    await page.keyboard.press("Shift+Enter")
    await expect(page.locator(".cell").first.locator(".output")).to_have_text("0\n1\n2\n3\n4\n")
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    other = await page.evaluate("""async () => {
        const kernel = await window.portico.notebook.server.kernels.startNew();
        await kernel.info;
        const id = kernel.id;
        await kernel.shutdown();
        return id;
    }""")
    urls = [u for u in sockets if f"/api/kernels/{other}/channels" in u]
    assert urls and all("since=now" in u for u in urls), urls
    assert [e for e in errors if "WebSocket" not in e] == []


async def test_a_notebook_changed_on_disk_is_not_overwritten_until_told(
    context: BrowserContext, srv: Server, root: Path
) -> None:
    write_notebook(root, "shared.ipynb", [{"source": "x = 1"}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "shared.ipynb", errors)
    await page.locator(".cell .cm-content").first.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.insert_text("  # from the page")
    await asyncio.sleep(0.05)  # a later modification time than the page's load, on any file system
    write_notebook(root, "shared.ipynb", [{"source": "y = 2  # from an editor"}])  # behind the page's back
    await page.keyboard.press("Control+s")
    banner = page.get_by_role("alert")
    await expect(banner).to_contain_text("changed on disk")
    await expect(page.locator(".save-state")).to_have_text("Not saved: the file changed on disk")
    assert nbformat.read(root / "shared.ipynb", as_version=4).cells[0].source == "y = 2  # from an editor"
    await page.keyboard.press("Control+s")  # asked again: still not saved
    await expect(banner).to_contain_text("changed on disk")
    assert nbformat.read(root / "shared.ipynb", as_version=4).cells[0].source == "y = 2  # from an editor"

    await banner.get_by_role("button", name="Overwrite").click()
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "))
    await expect(banner).to_be_hidden()
    assert nbformat.read(root / "shared.ipynb", as_version=4).cells[0].source == "x = 1  # from the page"

    await asyncio.sleep(0.05)
    write_notebook(root, "shared.ipynb", [{"source": "z = 3  # from git pull"}])
    await page.keyboard.press("Control+s")
    await banner.get_by_role("button", name="Reload from disk").click()
    await expect(page.locator(".cell .cm-content").first).to_have_text("z = 3  # from git pull")
    await page.keyboard.press("Control+s")  # what is on disk now is what the page loaded: saved at once
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "))
    assert errors == []


async def test_checkpoints_are_listed_and_reverted_to(context: BrowserContext, srv: Server, root: Path) -> None:
    write_notebook(root, "ck.ipynb", [{"source": "a = 1"}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "ck.ipynb", errors)
    await page.get_by_role("button", name="Checkpoints").click()
    await expect(page.get_by_role("alert")).to_contain_text("No checkpoint yet")
    await page.keyboard.press("Control+s")  # a save asked for makes the checkpoint
    await expect(page.locator(".save-state")).to_have_text(re.compile(r"^Saved "))
    await page.locator(".cell .cm-content").first.click()
    await page.keyboard.press("Control+End")
    await page.keyboard.insert_text("  # not wanted after all")
    await page.get_by_role("button", name="Checkpoints").click()
    revert = page.get_by_role("alert").get_by_role("button", name="Revert to this checkpoint")
    await expect(revert).to_have_count(1)
    await revert.click()
    await expect(page.locator(".cell .cm-content").first).to_have_text("a = 1")  # reloaded from the checkpoint
    assert nbformat.read(root / "ck.ipynb", as_version=4).cells[0].source == "a = 1"
    assert errors == []


async def test_a_long_stream_renders_whole(context: BrowserContext, srv: Server, root: Path) -> None:
    """20,000 lines arrive as hundreds of stream messages, each appended alone (bench/run page times it)."""
    write_notebook(root, "long.ipynb", [{"source": ""}])
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "long.ipynb", errors)
    cell = await run_cell(page, "for i in range(20000): print(i)")
    stream = cell.locator(".output .stream.stdout")
    await expect(stream).to_have_count(1)
    text = await stream.text_content()
    assert text == "".join(f"{i}\n" for i in range(20000))
    assert errors == []


async def test_a_notebook_of_1000_cells_opens_and_scrolls(context: BrowserContext, srv: Server, root: Path) -> None:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    for i in range(1000):
        cell = nbformat.v4.new_code_cell(f"print({i})", execution_count=i + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n" * 5)]
        nb.cells.append(cell)
    nbformat.write(nb, root / "big.ipynb")
    errors = Errors()
    await logged_in(context, srv, errors)
    page = await open_notebook(context, srv, "big.ipynb", errors)
    await expect(page.locator(".cell")).to_have_count(1000)
    last = page.locator(".cell").nth(999)
    await last.scroll_into_view_if_needed()
    await expect(last.locator(".output .stream")).to_have_text("999\n" * 5)
    await expect(last.locator(".cm-content")).to_have_text("print(999)")
    assert errors == []
