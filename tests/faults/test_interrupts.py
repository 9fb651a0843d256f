"""Interrupts that land where ipykernel does not expect them: every request is still answered.

ipykernel loses the reply of a request when a SIGINT lands while it sends that reply (it logs
"KeyboardInterrupt caught in kernel" and publishes the request's idle without a reply): three
interrupts 5 ms apart during a short sleep did it in 2 of 20 executions.  A client waiting for
that reply would wait for ever; Portico answers it (NoReply) once the idle has come and the
reply has not, within relay.REPLY_GRACE.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from portico.kernels.relay import REPLY_GRACE
from portico_testing import KernelClient, kernel_class_spec, serving, start_kernel, stdout_of

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

NO_REPLY = """
from ipykernel.ipkernel import IPythonKernel


class NoReply(IPythonKernel):
    async def execute_request(self, stream, ident, parent):
        if parent["content"].get("code") == "# no reply":
            return  # as when an interrupt cuts the reply short: busy and idle, and no reply
        return await super().execute_request(stream, ident, parent)
"""


async def test_a_request_the_kernel_ends_without_a_reply_is_answered(
    http: aiohttp.ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel_class_spec(tmp_path, "noreply", "no_reply", NO_REPLY, "NoReply")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    async with serving() as srv:
        kid = await start_kernel(http, srv, name="noreply")
        client = await KernelClient.connect(http, srv, kid)
        other = await KernelClient.connect(http, srv, kid)
        reply, _ = await client.execute("# no reply", timeout=REPLY_GRACE + 30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "NoReply", reply
        assert any("without replying to it" in line for line in srv.stderr)
        reply, outputs = await other.execute("print(6*7)")
        assert stdout_of(outputs) == "42\n"
        await client.close()
        await other.close()


async def test_interrupts_in_quick_succession_leave_no_request_unanswered(http: aiohttp.ClientSession) -> None:
    async with serving() as srv:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        _, outputs = await client.execute("import os, time; print(os.getpid())")
        pid = int(stdout_of(outputs))
        statuses = []
        for _ in range(20):
            running = await client.request("execute_request", {"code": "time.sleep(0.3)", "silent": False})
            await asyncio.sleep(0.25)
            for _ in range(3):
                os.kill(pid, signal.SIGINT)
                await asyncio.sleep(0.005)
            reply, _ = await client.collect(running, timeout=REPLY_GRACE + 30)
            statuses.append(reply["content"].get("ename") or reply["content"]["status"])
        # aborted is an answer too: ipykernel sends the error's reply before it posts the message
        # that ends its abort window, so a request sent on that reply can arrive inside the window
        assert set(statuses) <= {"ok", "KeyboardInterrupt", "NoReply", "aborted"}, statuses
        reply, outputs = await client.execute("print('still serving')")
        assert stdout_of(outputs) == "still serving\n"
        await client.close()
