"""Kernel protocol 5.5 subshells through Portico: created on control, addressed by subshell_id
in the header, and not blocked by a long execution on the main shell."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from portico_testing import KernelClient, Server, start_kernel

PROTOCOLS = [pytest.param(True, id="v1"), pytest.param(False, id="json")]


@pytest.mark.parametrize("v1", PROTOCOLS)
async def test_a_subshell_answers_while_the_main_shell_is_busy(
    http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool
) -> None:
    client = await KernelClient.connect(http, server, kernel, v1=v1)
    info = await client.request("kernel_info_request", {})
    reply = await client.next(lambda m: m["parent_header"].get("msg_id") == info and m["channel"] == "shell")
    if "kernel subshells" not in reply["content"].get("supported_features", []):
        pytest.skip("this ipykernel has no subshells (ipykernel >= 7 has)")
    created = await client.request("create_subshell_request", {}, channel="control")
    reply = await client.next(lambda m: m["parent_header"].get("msg_id") == created and m["channel"] == "control")
    subshell = reply["content"]["subshell_id"]
    busy = await client.request(
        "execute_request",
        {
            "code": "import time; time.sleep(3); 'main'",
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
        },
    )
    msg = client.message(
        "execute_request",
        {"code": "'sub'", "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False},
    )
    msg["header"]["subshell_id"] = subshell
    await client.send(msg)
    first = await client.next(
        lambda m: m["channel"] == "shell" and m["header"]["msg_type"] == "execute_reply", timeout=30
    )
    assert first["parent_header"]["msg_id"] == msg["header"]["msg_id"], "the subshell waited for the main shell"
    last = await client.next(
        lambda m: m["channel"] == "shell" and m["header"]["msg_type"] == "execute_reply", timeout=30
    )
    assert last["parent_header"]["msg_id"] == busy
    listed = await client.request("list_subshell_request", {}, channel="control")
    reply = await client.next(lambda m: m["parent_header"].get("msg_id") == listed and m["channel"] == "control")
    assert reply["content"]["subshell_id"] == [subshell]
    await client.close()


async def test_the_kernels_iopub_welcome_is_portico_s_and_reaches_no_client(
    http: aiohttp.ClientSession, server: Server
) -> None:
    """ipykernel 7's XPUB greets each new subscription with iopub_welcome: that subscription is
    Portico's, so the greeting is neither relayed nor journaled (it would read as the client's)."""
    kid = await start_kernel(http, server)
    early = await KernelClient.connect(http, server, kid, since=0)  # the journal from its first message
    async with http.post(f"{server.url}api/kernels/{kid}/restart", headers=server.headers) as r:
        assert r.status == 200  # a new subscription, greeted again
    late = await KernelClient.connect(http, server, kid, since=0)
    await asyncio.sleep(1)
    for client in (early, late):
        seen = []
        while not client.messages.empty():
            seen.append(client.messages.get_nowait()["header"]["msg_type"])
        assert "status" in seen and "iopub_welcome" not in seen, seen
        await client.close()
