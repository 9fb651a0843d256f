"""The output journal: numbering, bounds, and replay to clients that reconnect or attach late."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from portico.kernels.journal import Journal, size_of
from portico_testing import KernelClient, Server, serving, start_kernel

FLOOD = "from IPython.display import display\nfor i in range(20000): display({'text/plain': str(i)}, raw=True)"


def test_journal_numbers_without_holes_and_evicts_oldest_by_bytes() -> None:
    entry = size_of([b"x" * 30])
    j = Journal(max_bytes=3 * entry + 10, max_age=60)
    seqs = [j.append([b"x" * 30]) for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert (j.first_seq, j.next_seq, j.bytes) == (3, 6, 3 * entry)
    assert j.get(2) is None and j.get(3) == [b"x" * 30] and j.get(6) is None


def test_the_byte_bound_counts_what_an_entry_costs_in_memory() -> None:
    import tracemalloc

    parts = [b"h" * 200, b"p" * 200, b"{}", b"c" * 100]
    tracemalloc.start()
    try:
        j = Journal(max_bytes=1 << 30, max_age=60)
        before = tracemalloc.get_traced_memory()[0]
        for i in range(10_000):
            j.append([p + str(i).encode() for p in parts])
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.8 < j.bytes / held < 1.25, (j.bytes, held)


def test_journal_evicts_by_age(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    j = Journal(max_bytes=1000, max_age=10)
    j.append([b"a"])
    now[0] += 11
    j.append([b"b"])
    assert j.first_seq == 2 and j.get(1) is None


def test_a_disabled_journal_still_numbers() -> None:
    j = Journal(max_bytes=0, max_age=10)
    assert [j.append([b"a"]), j.append([b"b"])] == [1, 2] and j.first_seq == 3


def displayed(msg: dict[str, Any]) -> int | None:
    if msg["header"]["msg_type"] == "display_data":
        return int(msg["content"]["data"]["text/plain"])
    return None


async def collect_flood(
    client: KernelClient, got: list[int], seqs: list[int], stop_at: int | None = None, timeout: float = 120
) -> None:
    async with asyncio.timeout(timeout):
        while len(got) < 20000 and (stop_at is None or len(got) < stop_at):
            msg = await client.messages.get()
            if msg["channel"] != "iopub":
                continue
            seqs.append(msg["metadata"]["portico_seq"])
            value = displayed(msg)
            if value is not None:
                got.append(value)


@pytest.mark.parametrize("v1", [True, False], ids=["v1", "json"])
async def test_reconnect_mid_flood_gets_everything_exactly_once(
    http: aiohttp.ClientSession, server: Server, kernel: str, v1: bool
) -> None:
    client = await KernelClient.connect(http, server, kernel, v1=v1, session_id="flood", since=0)
    got: list[int] = []
    seqs: list[int] = []
    await client.request("execute_request", {"code": FLOOD, "silent": False})
    await collect_flood(client, got, seqs, stop_at=3000)
    await client.close()  # gone mid-flood
    await asyncio.sleep(0.3)  # away a while, the flood going on: not a wait for a state
    again = await KernelClient.connect(http, server, kernel, v1=v1, session_id="flood", since=seqs[-1])
    await collect_flood(again, got, seqs)
    assert got == list(range(20000))
    assert seqs == sorted(set(seqs)), "sequence numbers come in order, without duplicates"
    await again.close()


async def test_a_late_client_asking_from_zero_gets_the_whole_flood(
    http: aiohttp.ClientSession, server: Server, kernel: str
) -> None:
    first = await KernelClient.connect(http, server, kernel)
    msg_id = await first.request("execute_request", {"code": FLOOD, "silent": False})
    await first.next(lambda m: displayed(m) == 5000, timeout=60)
    late = await KernelClient.connect(http, server, kernel, v1=False, since=0)
    got: list[int] = []
    await collect_flood(late, got, [])
    assert got == list(range(20000))
    await first.collect(msg_id, timeout=60)
    await first.close()
    await late.close()


async def test_an_evicted_range_is_reported(http: aiohttp.ClientSession) -> None:
    async with serving(journal_max_bytes=200000) as srv:
        kid = await start_kernel(http, srv)
        runner = await KernelClient.connect(http, srv, kid)
        await runner.execute(
            "from IPython.display import display\nfor i in range(3000): display({'text/plain': str(i)}, raw=True)",
            timeout=60,
        )
        late = await KernelClient.connect(http, srv, kid, since=0)
        gap = await late.next(lambda m: m["channel"] == "iopub", timeout=10)
        assert gap["header"]["msg_type"] == "portico_journal_gap"
        assert gap["content"]["first"] == 1 and gap["content"]["last"] > 1
        following = await late.next(lambda m: m["channel"] == "iopub", timeout=10)
        assert following["metadata"]["portico_seq"] == gap["content"]["last"] + 1
        await runner.close()
        await late.close()


async def test_clients_that_do_not_ask_see_no_sequence_numbers(
    http: aiohttp.ClientSession, server: Server, kernel: str
) -> None:
    plain = await KernelClient.connect(http, server, kernel)
    _, outputs = await plain.execute("print(1)")
    assert all("portico_seq" not in m["metadata"] for m in outputs)
    await plain.close()


async def test_since_now_numbers_live_messages_and_replays_nothing(
    http: aiohttp.ClientSession, server: Server, kernel: str
) -> None:
    """What the browser page does: connect with since=now, drop, come back with since=<last seen>."""
    plain = await KernelClient.connect(http, server, kernel)
    await plain.execute("print('before')")
    page = await KernelClient.connect(http, server, kernel, session_id="page", since="now")
    _, outputs = await page.execute("print('after')")
    assert all(isinstance(m["metadata"]["portico_seq"], int) for m in outputs)
    assert "before" not in str([m["content"] for m in outputs])  # nothing from before was replayed
    last = max(m["metadata"]["portico_seq"] for m in outputs)
    await page.close()
    await plain.execute("print('while away')")
    back = await KernelClient.connect(http, server, kernel, session_id="page", since=last)
    missed = await back.next(lambda m: m["channel"] == "iopub" and m["header"]["msg_type"] == "stream", timeout=10)
    assert missed["content"]["text"] == "while away\n" and missed["metadata"]["portico_seq"] > last
    await plain.close()
    await back.close()


@pytest.mark.parametrize("since", ["x", "-1", "\u00b2", "1.5"])
async def test_since_must_be_a_number(http: aiohttp.ClientSession, server: Server, kernel: str, since: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as e:
        await KernelClient.connect(http, server, kernel, since=since)
    assert e.value.status == 400


async def test_rate_limit_trips_with_a_notice_when_turned_on(http: aiohttp.ClientSession) -> None:
    async with serving(limit_rate=True, iopub_msg_rate_limit=50, rate_limit_window=1) as srv:
        kid = await start_kernel(http, srv)
        client = await KernelClient.connect(http, srv, kid)
        _, outputs = await client.execute(
            "from IPython.display import display\nfor i in range(500): display({'text/plain': str(i)}, raw=True)"
        )
        shown = [m for m in outputs if m["header"]["msg_type"] == "display_data"]
        notices = [
            m for m in outputs if m["header"]["msg_type"] == "stream" and "rate exceeded" in m["content"]["text"]
        ]
        assert len(shown) < 500 and len(notices) == 1
        assert "iopub_msg_rate_limit" in notices[0]["content"]["text"]
        await client.close()
    assert any("IOPub message rate exceeded" in line for line in srv.stderr)
