"""The Python client (portico.client), against a real Portico: the README's example as written,
and the async client's callbacks, input and one-shot runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from portico.client import AsyncClient, PorticoError
from portico_testing import LocalServer, Server, run_session

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SECTION = README[README.index("## Code over HTTP") : README.index("## The notebook HTTP API")]


def test_the_readme_examples_run_as_written(subprocess_server: Server) -> None:
    server = subprocess_server
    commands = re.search(r"```sh\n(.*?)```", SECTION, re.S)
    code = re.search(r"```python\n(.*?)```", SECTION, re.S)
    assert commands and code, "the README's examples under Code over HTTP moved"
    lines = commands.group(1).strip().splitlines()
    run_session(server, [(c, e.removeprefix("# ")) for c, e in zip(lines[::2], lines[1::2], strict=True)])
    source = code.group(1).replace('"http://127.0.0.1:8888"', repr(server.url)).replace('"secret"', repr(server.token))
    result = subprocess.run([sys.executable, "-c", source], capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "42\nlive: 0\nlive: 1\nlive: 2\nerror ZeroDivisionError\n'Ada'\n"


async def test_the_async_client(server: LocalServer) -> None:
    seen: list[object] = []
    async with AsyncClient(server.url, server.token) as portico:
        assert "python3" in (await portico.kernelspecs())["kernelspecs"]
        kernel = await portico.start_kernel()
        assert [k["id"] for k in await portico.kernels()] == [kernel]

        async def answer(prompt: str, password: bool) -> str:
            seen.append((prompt, password))
            return "secret"

        code = "import sys, getpass\nprint('out')\nprint('err', file=sys.stderr)\npw = getpass.getpass('pw? ')\npw"
        result = await portico.run(code, kernel, on_input=answer, on_stderr=seen.append, on_output=seen.append)
        assert result.ok and result.stdout == "out\n" and result.stderr == "err\n" and result.text == "'secret'"
        assert ("pw? ", True) in seen
        # a print may come in pieces (a busy kernel flushes 'out' and '\n' apart): the callbacks get each
        assert "".join(s for s in seen if isinstance(s, str)) == "err\n"
        stdout = [o["text"] for o in seen if isinstance(o, dict) and o.get("name") == "stdout"]
        assert "".join(stdout) == "out\n"
        assert result.kernel_id == kernel and result.execution_count == 1 and result.duration is not None
        timed = await portico.run("import time\ntime.sleep(30)", kernel, timeout=0.5)
        assert timed.timed_out and timed.error is not None and timed.error.name == "KeyboardInterrupt"
        once = await portico.run("import os\nos.getpid()")
        assert once.ok and once.kernel_id is None and once.result is not None
        kept = await portico.run("z = 1", keep=True)
        assert kept.kernel_id is not None and (await portico.run("z + 1", kept.kernel_id)).text == "2"
        await portico.stop_kernel(kernel)
        await portico.stop_kernel(kept.kernel_id)
        try:
            await portico.run("1", kernel)
        except PorticoError as e:
            assert e.status == 404 and "No such kernel" in e.message
        else:
            raise AssertionError("a run on a stopped kernel must fail")
