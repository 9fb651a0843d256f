"""The browser page with big outputs and big notebooks, in Debian's Chromium.  Run it with bench/run page.

long stream   a cell printing 20,000 lines: the kernel's time (execute to idle, seen by a
              WebSocket client of the same Portico) against the page's (Shift+Enter to the
              last line in the page), each the median of the repetitions.
1000 cells    a notebook of 1,000 code cells with outputs: navigation to every cell in the
              page and its kernel idle, then a scroll to the end and its last cell painted.
first load    what the launcher loads (bytes on the wire: the page, app.js, app.css) and what
              it leaves for later (the chunks only some notebooks load).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
from pathlib import Path

import aiohttp
import nbformat
import servers
from clients import WebSocketKernel
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "src" / "portico" / "page" / "static"
LINES = 20_000
CODES = {
    "batched": f"for i in range({LINES}): print(i)",  # ipykernel sends them in a few messages
    "flushed": f"for i in range({LINES}): print(i, flush=True)",  # about one message a line
}
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-dev-shm-usage"]


def notebooks(root: Path) -> None:
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nb = nbformat.v4.new_notebook(metadata=meta, cells=[nbformat.v4.new_code_cell("")])
    nbformat.write(nb, root / "long.ipynb")
    big = nbformat.v4.new_notebook(metadata=meta)
    for i in range(1000):
        cell = nbformat.v4.new_code_cell(f"print({i})", execution_count=i + 1)
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"{i}\n" * 5)]
        big.cells.append(cell)
    nbformat.write(big, root / "big.ipynb")


async def kernel_time(server: servers.Server, code: str, reps: int) -> float:
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "api/kernels", json={}, headers=server.headers) as r:
            kid = (await r.json())["id"]
        kernel = await WebSocketKernel.open(http, server.url, server.headers, kid, v1=True)
        times = []
        for _ in range(reps):
            start = asyncio.get_running_loop().time()
            await (await kernel.execute(code)).done()
            times.append(asyncio.get_running_loop().time() - start)
        await kernel.close()
        async with http.delete(server.url + f"api/kernels/{kid}", headers=server.headers):
            pass
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    reps = parser.parse_args().reps
    root = Path(tempfile.mkdtemp(prefix="portico-bench-page-"))
    notebooks(root)
    server = await servers.portico(extra=["--root-dir", str(root)])
    try:
        kernel = {name: await kernel_time(server, code, reps) for name, code in CODES.items()}
        async with async_playwright() as p:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            browser = await p.chromium.launch(executable_path=chromium, args=ARGS)
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            await page.goto(server.url + f"?token={servers.TOKEN}")
            await page.get_by_role("heading", name="Launcher").wait_for()
            await page.wait_for_load_state("networkidle")
            loaded = await page.evaluate(
                "() => performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
                ".map(e => [e.name.split('?')[0].split('/').pop() || '(page)', e.transferSize])"
            )

            page = await context.new_page()
            await page.goto(server.url + "notebooks/long.ipynb")
            await page.wait_for_selector('.kernel-status[data-state="idle"]', timeout=60000)
            render = {}
            for name, code in CODES.items():
                renders = []
                for _ in range(reps):
                    await page.locator(".cell .cm-content").first.click()
                    await page.keyboard.press("Control+a")
                    await page.keyboard.insert_text(code)
                    await page.evaluate("() => { window.t0 = performance.now(); }")
                    await page.keyboard.press("Control+Enter")
                    done = f"""() => {{ const s = document.querySelector('.cell .output .stream.stdout');
                        if (s && s.textContent.endsWith('\\n{LINES - 1}\\n'))
                            return performance.now() - window.t0; }}"""
                    shown = await page.wait_for_function(done, polling="raf", timeout=120000)
                    renders.append(await shown.json_value())
                    await page.wait_for_selector('.kernel-status[data-state="idle"]')
                render[name] = statistics.median(renders) / 1000

            opens, scrolls = [], []
            for _ in range(reps):
                page = await context.new_page()
                await page.goto(server.url + "notebooks/big.ipynb")
                opened = """() => document.querySelectorAll('.cell').length === 1000
                    && document.querySelector('.kernel-status[data-state="idle"]') && performance.now()"""
                opens.append(await (await page.wait_for_function(opened, polling="raf", timeout=120000)).json_value())
                scrolled = await page.evaluate("""() => new Promise(done => {
                    const t0 = performance.now();
                    const last = document.querySelectorAll('.cell')[999];
                    last.scrollIntoView();
                    const shown = () => last.querySelector('.cm-content')
                        && last.getBoundingClientRect().top < innerHeight;
                    const check = () => shown() ? done(performance.now() - t0) : requestAnimationFrame(check);
                    requestAnimationFrame(check);
                })""")
                scrolls.append(scrolled)
                await page.close()
            await browser.close()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)

    print(f"## The browser page (Chromium {reps} repetitions, medians)\n")
    print("| measure | time |\n| --- | --- |")
    for name in CODES:
        k, r = kernel[name], render[name]
        print(f"| 20,000 lines, {name}: the kernel (execute to idle, WebSocket) | {k * 1000:.0f} ms |")
        print(f"| 20,000 lines, {name}: the page (Ctrl+Enter to the last line) | {r * 1000:.0f} ms ({r / k:.2f}×) |")
    opened = statistics.median(opens)
    print(f"| 1,000 cells with outputs: open (navigation to all cells, kernel idle) | {opened:.0f} ms |")
    print(f"| 1,000 cells: scroll to the last and paint it | {statistics.median(scrolls):.0f} ms |")
    first = sum(size for _, size in loaded)
    print(
        f"\nFirst load of the launcher: {first / 1024:.0f} KiB on the wire: "
        + ", ".join(f"{name} {size / 1024:.1f} KiB" for name, size in loaded if size)
    )
    later = sorted(STATIC.glob("chunk-*.js.gz"))
    if later:
        print(
            f"Loaded only when a notebook needs them: {len(later)} chunks, "
            f"{sum(f.stat().st_size for f in later) / 1024:.0f} KiB gzipped."
        )


if __name__ == "__main__":
    asyncio.run(main())
