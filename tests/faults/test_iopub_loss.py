"""Nothing lost on iopub: a Portico stalled mid-flood (SIGSTOP, a stand-in for a GC pause, CPU
steal or a busy machine) still delivers every message, in order, exactly once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from portico_testing import KernelClient, Server, start_kernel, start_server

pytestmark = [pytest.mark.fault, pytest.mark.timeout(240)]

FLOOD = 20_000
FLOOD_CODE = f"for i in range({FLOOD}): display({{'text/plain': str(i)}}, raw=True)"


async def flood(
    client: KernelClient, server: Server, stall: float, after: int = 2000, code: str = FLOOD_CODE
) -> list[Any]:
    """Run the flood; SIGSTOP the server for `stall` s once `after` numbers came; the texts received."""
    msg_id = await client.request(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    received: list[Any] = []
    stalled = stall == 0
    async with asyncio.timeout(180):
        while True:
            msg = await client.messages.get()
            if msg["parent_header"].get("msg_id") != msg_id or msg["channel"] != "iopub":
                continue
            kind = msg["header"]["msg_type"]
            if kind == "display_data":
                received.append(msg["content"]["data"]["text/plain"])
            elif kind != "status" and kind != "execute_input":
                received.append(msg)  # a notice of loss, or anything unexpected
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return received
            if not stalled and len(received) >= after:
                stalled = True
                os.kill(server.proc.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(stall)
                finally:
                    os.kill(server.proc.pid, signal.SIGCONT)


# each protocol and each transport once (they are layers apart: the WebSocket's encoding, ZeroMQ's
# transport); all four pairs cost the serial fault tier a minute more
@pytest.mark.parametrize(
    ("v1", "transport"), [pytest.param(True, "tcp", id="v1-tcp"), pytest.param(False, "ipc", id="json-ipc")]
)
async def test_a_stalled_portico_loses_nothing(http: aiohttp.ClientSession, transport: str, v1: bool) -> None:
    srv = start_server("--kernel-transport", transport)
    try:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid, v1=v1)
        received = await flood(client, srv, stall=10)
        assert received == [str(i) for i in range(FLOOD)]
        await client.close()
    finally:
        srv.stop()


def foreign_ipykernel(tmp_path: Path) -> Path:
    """A kernelspec that starts ipykernel in a way Portico does not recognise (so cannot configure)."""
    spec = tmp_path / "kernels" / "foreign"
    spec.mkdir(parents=True)
    code = "from ipykernel.kernelapp import launch_new_instance; launch_new_instance()"
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", code, "-f", "{connection_file}"],
                "display_name": "ipykernel, started by hand",
                "language": "python",
            }
        )
    )
    return tmp_path


async def test_a_loss_portico_cannot_prevent_is_told_to_every_client(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A kernel whose iopub high-water mark Portico could not raise drops messages at it; Portico
    sees the hole in the kernel's message numbers and says how many went missing, in place."""
    path = foreign_ipykernel(tmp_path)
    srv = start_server(env={"JUPYTER_PATH": str(path)})
    try:
        kid = await start_kernel(http, srv, name="foreign")
        client = await KernelClient.connect(http, srv, kid, v1=False)
        # the kernel goes on after the flood, so a message follows the hole once Portico reads again
        received = await flood(client, srv, stall=3, code=FLOOD_CODE + "\nimport time; time.sleep(5); print('end')")
        numbers = [r for r in received if isinstance(r, str)]
        notices = [
            r
            for r in received
            if not isinstance(r, str) and r["header"]["msg_type"] == "stream" and r["content"]["name"] == "stderr"
        ]
        assert received[-1]["content"]["text"] == "end\n"
        lost = FLOOD - len(numbers)
        assert lost > 0, "the stall was expected to overflow the kernel's iopub queue"
        assert numbers == sorted(numbers, key=int) and len(set(numbers)) == len(numbers)
        assert notices, "messages were lost without a word"
        told = sum(n["metadata"]["portico_lost"] for n in notices)
        assert told == lost
        assert "lost" in notices[0]["content"]["text"]
        await client.close()
    finally:
        srv.stop()
