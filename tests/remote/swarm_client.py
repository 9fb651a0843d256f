"""Run inside Portico's container on the swarm's overlay network (test_swarm.py): a kernel in a
swarm task through Portico's REST API and WebSocket, reported as JSON on stdout."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import aiohttp

URL, TOKEN = sys.argv[1], sys.argv[2]
HEADERS = {"Authorization": f"token {TOKEN}"}
WHERE = "import os, socket; print(socket.gethostname(), os.environ.get('KERNEL_ID'))"
SLEEP = "import time; print('running', flush=True); time.sleep(60)"


async def execute(ws: aiohttp.ClientWebSocketResponse, code: str, interrupt: bool = False) -> dict:
    msg_id = uuid.uuid4().hex
    header = {"msg_id": msg_id, "msg_type": "execute_request", "username": "t", "session": "s", "version": "5.3"}
    content = {"code": code, "silent": False}
    await ws.send_json({"header": header, "parent_header": {}, "metadata": {}, "content": content, "channel": "shell"})
    out, reply, idle = "", None, False
    while reply is None or not idle:
        msg = await ws.receive_json(timeout=60)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["header"]["msg_type"]
        if kind == "stream":
            out += msg["content"]["text"]
            if interrupt and "running" in msg["content"]["text"]:  # the code runs: interrupt it now
                async with http.post(f"{URL}api/kernels/{kid}/interrupt", headers=HEADERS) as r:
                    assert r.status == 204
        elif kind == "execute_reply":
            reply = msg["content"]
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    return {"out": out.strip(), "status": reply["status"], "ename": reply.get("ename")}


async def main() -> None:
    global http, kid
    report: dict = {}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{URL}api/kernels", json={"name": "swarm_kernel"}, headers=HEADERS) as r:
            body = await r.json()
            report["start"] = r.status
            if r.status != 201:
                report["error"] = body
                print(json.dumps(report))
                return
        kid = report["id"] = body["id"]
        async with http.ws_connect(f"{URL}api/kernels/{kid}/channels", headers=HEADERS) as ws:
            report["where"] = (await execute(ws, WHERE))["out"]
            report["interrupted"] = (await execute(ws, SLEEP, interrupt=True))["ename"]
            await execute(ws, "x = 1")
            async with http.post(f"{URL}api/kernels/{kid}/restart", headers=HEADERS) as r:
                report["restart"] = r.status
            report["after restart"] = (await execute(ws, "print('x' in dir())"))["out"]
        async with http.ws_connect(f"{URL}api/kernels/{kid}/channels", headers=HEADERS) as ws:
            report["new websocket"] = (await execute(ws, "print(6 * 7)"))["out"]
        async with http.delete(f"{URL}api/kernels/{kid}", headers=HEADERS) as r:
            report["delete"] = r.status
    print(json.dumps(report))


asyncio.run(main())
