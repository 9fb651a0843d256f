"""The launcher's file browser in Chromium: each action done in the page shows on disk and in the
contents API, and what the API does shows in the page."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import BrowserContext, Page, expect

from portico_browser import Errors, browser_context, logged_in
from portico_testing import Server, start_server

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


@pytest.fixture(scope="module")
def srv(root: Path) -> Iterator[Server]:
    server = start_server("--root-dir", str(root))
    yield server
    server.stop()


@pytest.fixture
async def context(srv: Server) -> AsyncIterator[BrowserContext]:
    async with browser_context(accept_downloads=True) as ctx:
        yield ctx


async def api(srv: Server, method: str, path: str, body: object = None) -> tuple[int, object]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, f"{srv.url}api/contents/{path}", headers=srv.headers, json=body) as r:
            return r.status, (await r.json()) if r.status != 204 else None


def row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(".files li").filter(has=page.get_by_role("link", name=name, exact=True))


async def test_every_file_action_shows_in_the_contents_api(
    context: BrowserContext, srv: Server, root: Path, tmp_path: Path
) -> None:
    errors = Errors()
    page = await logged_in(context, srv, errors)
    files = page.locator(".files")

    await files.get_by_role("button", name="New folder").click()
    await expect(row(page, "Untitled Folder")).to_have_count(1)
    assert (root / "Untitled Folder").is_dir()

    page.once("dialog", lambda d: d.accept("data"))
    await files.get_by_role("button", name="Rename Untitled Folder").click()
    await expect(row(page, "data")).to_have_count(1)
    status, model = await api(srv, "GET", "data")
    assert status == 200 and model["type"] == "directory"  # type: ignore[index]

    await files.get_by_role("link", name="data", exact=True).click()
    await expect(files.locator(".crumbs")).to_contain_text("data")
    await files.get_by_role("button", name="New file").click()
    await expect(row(page, "untitled")).to_have_count(1)
    assert (root / "data" / "untitled").is_file()

    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(2_500_000))  # three chunks of 1 MiB at most
    await files.locator('input[type="file"]').set_input_files(str(big))
    await expect(row(page, "big.bin")).to_have_count(1, timeout=20000)
    assert (root / "data" / "big.bin").read_bytes() == big.read_bytes()
    assert not [p for p in (root / "data").iterdir() if p.name.startswith(".~")]

    await files.evaluate("""node => {
        const data = new DataTransfer();
        data.items.add(new File(['dropped text\\n'], 'dropped.txt', { type: 'text/plain' }));
        node.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    }""")
    await expect(row(page, "dropped.txt")).to_have_count(1)
    assert (root / "data" / "dropped.txt").read_text() == "dropped text\n"

    await files.get_by_role("button", name="Copy dropped.txt").click()
    await expect(row(page, "dropped-Copy1.txt")).to_have_count(1)
    assert (root / "data" / "dropped-Copy1.txt").read_text() == "dropped text\n"

    async with page.expect_download() as download:
        await files.get_by_role("link", name="Download dropped.txt").click()
    saved = tmp_path / "downloaded.txt"
    await (await download.value).save_as(saved)
    assert saved.read_text() == "dropped text\n" and (await download.value).suggested_filename == "dropped.txt"

    page.once("dialog", lambda d: d.dismiss())
    await files.get_by_role("button", name="Delete dropped-Copy1.txt").click()
    await expect(row(page, "dropped-Copy1.txt")).to_have_count(1)
    assert (root / "data" / "dropped-Copy1.txt").exists()  # not without the confirmation
    page.once("dialog", lambda d: d.accept())
    await files.get_by_role("button", name="Delete dropped-Copy1.txt").focus()
    await page.keyboard.press("Enter")  # by keyboard, as every action
    await expect(row(page, "dropped-Copy1.txt")).to_have_count(0)
    assert not (root / "data" / "dropped-Copy1.txt").exists()
    await expect(files.get_by_role("status")).to_have_text("Deleted dropped-Copy1.txt.")

    # the reverse: what the API does shows in the page
    status, _ = await api(srv, "PUT", "data/from-api.txt", {"type": "file", "format": "text", "content": "hi"})
    assert status == 201
    await expect(row(page, "from-api.txt")).to_have_count(1, timeout=15000)
    status, _ = await api(srv, "DELETE", "data/untitled")
    assert status == 204
    await expect(row(page, "untitled")).to_have_count(0, timeout=15000)

    unlabelled = await page.evaluate("""() => [...document.querySelectorAll('.files button, .files a[href]')]
        .filter(e => !(e.getAttribute('aria-label') || e.textContent.trim())).length""")
    assert unlabelled == 0
    await files.get_by_role("button", name="New notebook").click()
    await page.wait_for_url(re.compile(r"/notebooks/data/Untitled\d*\.ipynb$"))
    assert (root / "data" / "Untitled.ipynb").is_file()
    assert errors == []
