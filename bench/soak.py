"""The soak: many clients over several kernels, for minutes, doing everything at random.

50 clients over 10 kernels connect, execute (numbered output, checked line by line), flood
(2,000 numbered display_data), interrupt, restart and disconnect at random.  Every execution
must end with its reply and status: idle, and with every number it printed exactly once, in
order; anything else is counted as lost.  Executions cut short by another client's restart or
interrupt are counted apart: they were answered with an error that says so, or their output
ended with Portico's notice that the rest is missing (its metadata portico_lost); what did
arrive of them must still be a whole prefix.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from servers import Server

CUT = {"KernelRestarted", "DeadKernelError", "KeyboardInterrupt", "NoReply"}  # NoReply: an interrupt took the reply
TIMEOUT = 120  # s an execution may take, held through restarts, before it is reported as late
LATE_LIMIT = 600  # s after which one that never finished is lost
JOURNAL_MB = 32  # journal_max_bytes, Portico's default
SLACK_MB = 64  # what the server may take besides the journals (buffers, fragmentation)


@dataclass
class Tally:
    executions: int = 0
    lost: int = 0  # missing, repeated or out-of-order numbers, and executions never answered
    cut: int = 0  # answered with an error or aborted: another client's restart or interrupt came first
    errors: list[str] = field(default_factory=list)  # what was lost, said
    refused: int = 0  # an interrupt or restart that was not answered 204 / 200
    late: int = 0  # answered whole, but only after TIMEOUT (held through restarts that queued up)
    actions: dict[str, int] = field(default_factory=dict)
    # kernel id -> (when, what) of its interrupts, restarts and reconnects: the context of a loss
    timeline: dict[str, list[tuple[float, str]]] = field(default_factory=dict)

    def mark(self, kernel_id: str, what: str) -> None:
        self.timeline.setdefault(kernel_id, []).append((time.monotonic(), what))

    def around(self, kernel_id: str, since: float) -> str:
        """A kernel, and what happened to it from 5 s before a moment on (in seconds from it)."""
        timeline = self.timeline.get(kernel_id, [])
        events = [f"{when - since:+.1f} s {what}" for when, what in timeline if when >= since - 5]
        return f"{kernel_id[:8]}: " + (", ".join(events[:12]) or "nothing else")


class Connection:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.session = uuid.uuid4().hex
        self.waiting: dict[str, tuple[asyncio.Event, list[dict[str, Any]], dict[str, Any]]] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            m = orjson.loads(msg.data)
            entry = self.waiting.get(m["parent_header"].get("msg_id", ""))
            if entry is None:
                continue
            done, outputs, state = entry
            if m["channel"] == "shell":
                state["reply"] = m["content"]
            elif m["header"]["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                state["idle"] = True
            elif "portico_lost" in m.get("metadata", {}):  # Portico's notice that output is missing
                state["told"] = m["content"]["text"]
            elif m["channel"] == "iopub" and m["header"]["msg_type"] in ("stream", "display_data", "error"):
                outputs.append(m)
            if "reply" in state and state.get("idle"):
                done.set()

    async def execute(self, code: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The reply (None when none came in time) and the outputs; a reply is marked "told" with
        the text of Portico's notice when Portico said that output is missing."""
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": self.session,
            "username": "soak",
            "date": "2026-01-01T00:00:00.000000Z",
            "version": "5.3",
        }
        done, outputs, state = self.waiting[msg_id] = (asyncio.Event(), [], {})
        await self.ws.send_str(
            orjson.dumps(
                {
                    "header": header,
                    "parent_header": {},
                    "metadata": {},
                    "channel": "shell",
                    "content": {
                        "code": code,
                        "silent": False,
                        "store_history": False,
                        "user_expressions": {},
                        "allow_stdin": False,
                        "stop_on_error": False,
                    },
                }
            ).decode()
        )
        sent = time.monotonic()
        try:
            async with asyncio.timeout(LATE_LIMIT):
                await done.wait()
        except TimeoutError:
            return None, outputs
        finally:
            del self.waiting[msg_id]
        reply: dict[str, Any] = state["reply"]
        if "told" in state:
            reply = {**reply, "told": state["told"]}
        if time.monotonic() - sent > TIMEOUT:
            reply = {**reply, "late": time.monotonic() - sent}
        return reply, outputs

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def check(
    tally: Tally,
    reply: dict[str, Any] | None,
    got: list[str],
    expected: list[str],
    what: str,
    context: str = "",
    text: bool = False,
) -> None:
    """Count one execution; context (what happened to its kernel) goes with any error.  With
    text, got and expected are printed lines: a cut may end inside a line (an interrupt between
    the pieces print() writes), so what came must be a prefix of the text, not of the lines."""
    tally.executions += 1
    errors = len(tally.errors)
    if reply is not None and "late" in reply:
        tally.late += 1
        tally.errors.append(f"{what}: answered only after {reply['late']:.0f} s")
    if reply is None:
        tally.lost += 1
        tally.errors.append(f"{what}: no reply and idle within {LATE_LIMIT} s")
    elif (
        reply.get("status") == "aborted"
        or (reply.get("status") == "error" and reply.get("ename") in CUT)
        or "told" in reply
    ):
        tally.cut += 1
        whole = "\n".join(expected).startswith("\n".join(got)) if text else got == expected[: len(got)]
        if not whole:  # what did arrive must still be whole and in order
            tally.lost += 1
            tally.errors.append(
                f"{what}: cut ({reply.get('ename') or reply.get('told') or reply.get('status')}), "
                f"and what came was not "
                f"a prefix: {got[:3]}..{got[-3:]} ({len(got)} of {len(expected)})"
            )
    elif got != expected:
        tally.lost += max(1, len(set(expected) - set(got)))
        missing = [i for i, e in enumerate(expected) if e not in set(got)]
        span = f"; missing {missing[0]}..{missing[-1]}" if missing else ""
        status = " ".join(str(reply.get(k)) for k in ("status", "ename") if reply.get(k))
        tally.errors.append(f"{what}: {len(got)} of {len(expected)} numbers, status {status}{span}")
    if context:
        tally.errors[errors:] = [f"{error} (kernel {context})" for error in tally.errors[errors:]]


async def client(
    http: aiohttp.ClientSession, server: Server, kernel_id: str, deadline: float, tally: Tally, rng: random.Random
) -> None:
    url = f"{server.url.replace('http', 'ws', 1)}api/kernels/{kernel_id}/channels"
    conn = Connection(await http.ws_connect(url, headers=server.headers, max_msg_size=0))
    try:
        while time.monotonic() < deadline:
            action = rng.choices(["execute", "flood", "interrupt", "restart", "reconnect"], [50, 15, 10, 3, 22])[0]
            tally.actions[action] = tally.actions.get(action, 0) + 1
            tag = uuid.uuid4().hex[:8]
            began = time.monotonic()
            if action == "execute":
                n = rng.randint(1, 50)
                reply, outputs = await conn.execute(f"for i in range({n}): print('{tag}', i)")
                text = "".join(m["content"].get("text", "") for m in outputs if m["header"]["msg_type"] == "stream")
                expected = [f"{tag} {i}" for i in range(n)]
                check(tally, reply, text.splitlines(), expected, "execute", tally.around(kernel_id, began), text=True)
            elif action == "flood":
                code = f"for i in range(2000): display({{'text/plain': '{tag} %d' % i}}, raw=True)"
                reply, outputs = await conn.execute(code)
                got = [m["content"]["data"]["text/plain"] for m in outputs if m["header"]["msg_type"] == "display_data"]
                check(tally, reply, got, [f"{tag} {i}" for i in range(2000)], "flood", tally.around(kernel_id, began))
            elif action == "interrupt":
                running = asyncio.create_task(conn.execute("import time; time.sleep(3)"))
                await asyncio.sleep(0.3)
                tally.mark(kernel_id, "interrupt")
                async with http.post(f"{server.url}api/kernels/{kernel_id}/interrupt", headers=server.headers) as r:
                    if r.status != 204:
                        tally.refused += 1
                        tally.errors.append(f"interrupt: {r.status} {await r.text()}")
                reply, _ = await running
                check(tally, reply, [], [], "interrupt", tally.around(kernel_id, began))
            elif action == "restart":
                tally.mark(kernel_id, "restart asked")
                async with http.post(f"{server.url}api/kernels/{kernel_id}/restart", headers=server.headers) as r:
                    tally.mark(kernel_id, f"restart answered {r.status}")
                    if r.status != 200:
                        tally.refused += 1
                        tally.errors.append(f"restart: {r.status} {await r.text()}")
            else:
                tally.mark(kernel_id, "a reconnect")
                await conn.close()
                try:
                    conn = Connection(await http.ws_connect(url, headers=server.headers, max_msg_size=0))
                except aiohttp.WSServerHandshakeError as e:  # the kernel is dead: said, and this client stops
                    tally.refused += 1
                    tally.errors.append(f"reconnect: {e.status} {e.message}")
                    return
    finally:
        await conn.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def metrics(http: aiohttp.ClientSession, server: Server) -> dict[str, float]:
    """The server's unlabelled figures from /metrics."""
    async with http.get(server.url + "metrics", headers=server.headers) as r:
        text = await r.text()
    figures = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("portico_") and "{" not in name and value:
            figures[name] = float(value)
    return figures


async def sample(pid: int, seconds: float) -> None:
    """The server's RSS and descriptors along the way (growth that levels off is the journals filling)."""
    step = max(seconds / 10, 1)
    started = time.monotonic()
    while True:
        await asyncio.sleep(step)
        print(f"  soak: at {time.monotonic() - started:.0f} s: RSS {rss_mb(pid):.0f} MB, {fds(pid)} fds", flush=True)


async def soak(
    http: aiohttp.ClientSession, server: Server, seconds: float, clients: int = 50, kernels: int = 10
) -> dict[str, float]:
    ids = []
    for _ in range(kernels):
        async with http.post(server.url + "api/kernels", json={}, headers=server.headers) as r:
            ids.append(str((await r.json())["id"]))
    pid = server.proc.pid
    rss0, fds0 = rss_mb(pid), fds(pid)
    tally, rng = Tally(), random.Random(int(os.environ.get("BENCH_SOAK_SEED", "1")))
    deadline = time.monotonic() + seconds
    sampler = asyncio.create_task(sample(pid, seconds))
    await asyncio.gather(
        *(client(http, server, ids[i % kernels], deadline, tally, random.Random(rng.random())) for i in range(clients))
    )
    sampler.cancel()
    await asyncio.sleep(1)
    rss1, fds1 = rss_mb(pid), fds(pid)
    figures = await metrics(http, server)
    for kernel_id in ids:
        async with http.delete(f"{server.url}api/kernels/{kernel_id}", headers=server.headers):
            pass
    for error in tally.errors[:20]:
        print("  soak:", error, flush=True)
    if tally.errors:
        print("  soak: the server's last log records:", *server.own_log[-20:], sep="\n    ", flush=True)
    # What may grow: each kernel's journal, up to journal_max_bytes (Portico's default, 32 MB), and
    # what the allocator keeps around it; RSS past this bound is a leak.
    bound = rss0 + kernels * JOURNAL_MB + SLACK_MB
    return {
        "seconds": seconds,
        "executions": tally.executions,
        "lost": tally.lost,
        "cut (answered)": tally.cut,
        "REST refused": tally.refused,
        f"late (> {TIMEOUT} s)": tally.late,
        "restarts": tally.actions.get("restart", 0),
        "reconnects": tally.actions.get("reconnect", 0),
        "RSS start MB": rss0,
        "RSS end MB": rss1,
        "RSS bound MB": bound,
        "fds start": fds0,
        "fds end": fds1,
        "journals MB end": figures.get("portico_journal_bytes", float("nan")) / 2**20,
        "requests kept end": figures.get("portico_requests_tracked", float("nan")),
    }
