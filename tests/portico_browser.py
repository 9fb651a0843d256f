"""The browser tests' Chromium (Debian's, driven by Playwright) and their steps on Portico's page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from portico_testing import Server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    assert CHROMIUM.exists(), "scripts/setup --test installs Debian's chromium; the browser tests never skip"
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


class Errors(list[str]):
    def watch(self, page: Page) -> Page:
        page.on("pageerror", lambda e: self.append(f"page error: {e}"))
        page.on("console", lambda m: self.append(f"console: {m.text}") if m.type == "error" else None)
        return page


async def logged_in(context: BrowserContext, srv: Server, errors: Errors) -> Page:
    page = errors.watch(await context.new_page())
    await page.goto(srv.url + f"?token={srv.token}")
    await expect(page.get_by_role("heading", name="Launcher")).to_be_visible()
    assert "token" not in page.url
    return page


async def open_notebook(context: BrowserContext, srv: Server, path: str, errors: Errors) -> Page:
    page = errors.watch(await context.new_page())
    await page.goto(srv.url + "notebooks/" + path)
    await expect(page.locator(".kernel-status")).to_have_attribute("data-state", "idle", timeout=30000)
    return page


async def run_cell(page: Page, code: str, wait: bool = True) -> Any:
    """Type into the last cell and press Shift+Enter; the cell's locator, once it has finished."""
    index = await page.locator(".cell").count() - 1
    await page.locator(".cell").nth(index).locator(".cm-content").click()
    await page.keyboard.type(code)
    await page.keyboard.press("Shift+Enter")
    cell = page.locator(".cell").nth(index)
    if wait:
        await expect(cell.locator(".prompt")).to_have_text(re.compile(r"\[\d+\]:"), timeout=30000)
    return cell


@asynccontextmanager
async def browser_context(**options: Any) -> AsyncIterator[BrowserContext]:
    """A fresh Chromium and one context of it (1280x900 unless options say otherwise)."""
    async with chromium() as browser:
        ctx = await browser.new_context(**{"viewport": {"width": 1280, "height": 900}, **options})
        try:
            yield ctx
        finally:
            await ctx.close()
