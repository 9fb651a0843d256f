"""Code over plain HTTP, with real kernels: jupyter-server-nbmodel's contract, streaming, wait,
timeouts, cancel, one-shot runs."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from portico_testing import LocalServer, eventually, serving, start_kernel

NDJSON = {"Accept": "application/x-ndjson"}
GATE = "import os, time\nwhile not os.path.exists({path!r}): time.sleep(0.01)\n"  # the test opens the gate
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


async def post(
    http: aiohttp.ClientSession, srv: LocalServer, path: str, body: Any, **headers: str
) -> tuple[int, Any, Any]:
    async with http.post(srv.url + path, json=body, headers={**srv.headers, **headers}) as r:
        return r.status, await r.json(), r.headers


async def get(http: aiohttp.ClientSession, srv: LocalServer, url: str) -> tuple[int, Any, Any]:
    async with http.get(srv.url.rstrip("/") + url if url.startswith("/") else srv.url + url, headers=srv.headers) as r:
        return r.status, await r.json(), r.headers


async def until_complete(http: aiohttp.ClientSession, srv: LocalServer, url: str) -> tuple[int, Any]:
    """Poll a request until it is no longer pending (202)."""
    answer: list[Any] = []

    async def ended() -> bool:
        status, body, _ = await get(http, srv, url)
        answer[:] = [status, body]
        return status != 202

    await eventually(ended, "the request's end")
    return answer[0], answer[1]


async def test_submit_poll_done_the_nbmodel_way(http: aiohttp.ClientSession, server: LocalServer, kernel: str) -> None:
    status, body, headers = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "print(6*7)\n6*7"})
    assert status == 202
    assert headers["Location"] == body["request_url"] == f"/api/kernels/{kernel}/requests/{body['request_id']}"
    assert body["pending"] is True and body["request_status"] in ("queued", "running") and body["kernel_id"] == kernel
    assert json.loads(body["outputs"]) == []
    status, done = await until_complete(http, server, headers["Location"])
    assert status == 200 and done["status"] == "ok" and done["pending"] is False
    assert done["request_status"] == "complete" and isinstance(done["execution_count"], int)
    assert json.loads(done["outputs"]) == [
        {"output_type": "stream", "name": "stdout", "text": "42\n"},
        {
            "output_type": "execute_result",
            "data": {"text/plain": "42"},
            "metadata": {},
            "execution_count": done["execution_count"],
        },
    ]


async def test_a_poll_while_it_runs_has_the_outputs_so_far(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    code = "print('first', flush=True)\n" + GATE.format(path=str(gate)) + "print('second')"
    _, body, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": code})

    async def partial() -> bool:
        status, polled, _ = await get(http, server, body["request_url"])
        assert status == 202, polled
        return polled["request_status"] == "running" and "first" in polled["outputs"]

    await eventually(partial, "the first line in a poll while the cell runs")
    _, listed, _ = await get(http, server, f"api/kernels/{kernel}/execute")
    assert [r["request_id"] for r in listed["requests"]] == [body["request_id"]]
    gate.touch()
    status, done = await until_complete(http, server, body["request_url"])
    assert status == 200 and json.loads(done["outputs"])[0]["text"] == "first\nsecond\n"
    _, listed, _ = await get(http, server, f"api/kernels/{kernel}/execute")
    assert listed == {"kernel_id": kernel, "requests": []}


async def test_input_is_asked_for_and_answered(http: aiohttp.ClientSession, server: LocalServer, kernel: str) -> None:
    code = "name = input('who? ')\nprint('hello', name)"
    _, body, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": code})

    async def asking() -> bool:
        status, _, _ = await get(http, server, body["request_url"])
        return status == 300

    await eventually(asking, "the input request")
    status, asked, headers = await get(http, server, body["request_url"])
    assert headers["Location"] == f"/api/kernels/{kernel}/input"
    assert asked["input_request"] == {"prompt": "who? ", "password": False} and asked["request_status"] == "input"
    assert asked["parent_header"]["msg_type"] == "input_request"
    status, _, _ = await post(http, server, f"api/kernels/{kernel}/input", {"input": "ada"})
    assert status == 201
    status, done = await until_complete(http, server, body["request_url"])
    assert status == 200 and "hello ada" in done["outputs"]
    status, refused, _ = await post(http, server, f"api/kernels/{kernel}/input", {"input": "again"})
    assert status == 409, refused


async def test_an_exception_is_a_complete_request_with_status_error(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str
) -> None:
    status, done, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "1/0", "wait": True})
    assert status == 200 and done["status"] == "error" and done["request_status"] == "complete"
    (error,) = json.loads(done["outputs"])
    assert error["output_type"] == "error" and error["ename"] == "ZeroDivisionError"


async def test_cancel_interrupts_a_running_request_and_a_queued_one_never_runs(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str, tmp_path: Path
) -> None:
    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    _, running, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": code})
    _, queued, _ = await post(
        http, server, f"api/kernels/{kernel}/execute", {"code": f"open({str(tmp_path / 'ran')!r}, 'w')"}
    )

    async def printed() -> bool:
        _, polled, _ = await get(http, server, running["request_url"])
        return "started" in polled["outputs"]

    await eventually(printed, "the first request to print")  # an interrupt earlier would miss the sleep
    async with http.delete(server.url.rstrip("/") + queued["request_url"], headers=server.headers) as r:
        assert r.status == 204
    async with http.delete(server.url.rstrip("/") + running["request_url"], headers=server.headers) as r:
        assert r.status == 204
    status, done = await until_complete(http, server, running["request_url"])
    assert status == 200 and done["status"] == "error" and "KeyboardInterrupt" in done["outputs"]
    status, never = await until_complete(http, server, queued["request_url"])
    assert status == 200 and never["status"] == "aborted" and not (tmp_path / "ran").exists()
    status, after, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "print('back')", "wait": 30})
    assert status == 200 and after["status"] == "ok" and "back" in after["outputs"]


async def test_unknown_kernel_or_request_is_404_and_no_token_is_refused(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str
) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    status, body, _ = await post(http, server, f"api/kernels/{missing}/execute", {"code": "1"})
    assert status == 404 and "No such kernel" in body["message"]
    status, body, _ = await get(http, server, f"api/kernels/{kernel}/requests/{missing}")
    assert status == 404 and missing in body["message"]
    status, body, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": 1})
    assert status == 400 and "code" in body["message"]
    async with http.post(server.url + f"api/kernels/{kernel}/execute", json={"code": "1"}) as r:
        assert r.status == 401
    async with http.post(server.url + "api/execute", json={"code": "1"}) as r:
        assert r.status == 401


async def stream(
    http: aiohttp.ClientSession,
    srv: LocalServer,
    path: str,
    body: Any,
    on_event: Any = None,
    stop_after: int | None = None,
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with http.post(srv.url + path, json=body, headers={**srv.headers, **NDJSON}) as r:
        assert r.status == 200 and r.content_type == "application/x-ndjson", await r.text()
        async for line in r.content:
            events.append(json.loads(line))
            if on_event is not None:
                on_event(events[-1])
            if stop_after is not None and len(events) >= stop_after:
                break  # the connection goes away mid-stream
    return events


async def test_events_stream_in_order_as_they_happen(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    code = (
        "from IPython.display import display, Image\nimport base64\n"
        "print('one', flush=True)\n"
        + GATE.format(path=str(gate))
        + f"h = display(Image(data=base64.b64decode({PNG!r})), display_id=True)\n"
        "h.update({'text/plain': 'updated'}, raw=True)\n"
        "raise ValueError('boom')"
    )

    def open_gate(event: dict[str, Any]) -> None:
        if event["type"] == "stream":  # the first output arrived while the cell still waits for this
            gate.touch()

    events = await stream(http, server, f"api/kernels/{kernel}/execute", {"code": code}, open_gate)
    for i in range(len(events) - 1, 0, -1):  # a print can come as two messages ("one", "\n"): one event here
        if events[i]["type"] == events[i - 1]["type"] == "stream":
            events[i - 1]["text"] += events.pop(i)["text"]
    kinds = [e["type"] for e in events]
    assert kinds == ["accepted", "running", "stream", "display_data", "update_display_data", "error", "done"], events
    assert events[2]["text"] == "one\n"
    assert events[3]["data"]["image/png"].strip() == PNG and "display_id" in events[3]["transient"]
    assert events[4]["data"] == {"text/plain": "updated"}
    assert events[5]["ename"] == "ValueError" and events[5]["evalue"] == "boom"
    assert events[6]["status"] == "error" and events[6]["timed_out"] is False and events[6]["duration"] > 0
    _, done, _ = await get(http, server, events[0]["request_url"])
    outputs = json.loads(done["outputs"])
    assert [o["output_type"] for o in outputs] == ["stream", "display_data", "error"]
    assert outputs[1]["data"] == {"text/plain": "updated"}  # the display's update applied to it


async def test_server_sent_events_too(http: aiohttp.ClientSession, server: LocalServer, kernel: str) -> None:
    headers = {**server.headers, "Accept": "text/event-stream"}
    async with http.post(server.url + f"api/kernels/{kernel}/execute", json={"code": "print(1)"}, headers=headers) as r:
        assert r.content_type == "text/event-stream"
        text = await r.text()
    assert text.startswith("event: accepted\ndata: {") and "event: stream\ndata: " in text
    assert text.endswith('"timed_out":false}\n\n') and "event: done\n" in text


async def test_a_client_that_leaves_mid_stream_leaves_the_request_running_and_pollable(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    code = "print('before', flush=True)\n" + GATE.format(path=str(gate)) + "print('after')"
    events = await stream(http, server, f"api/kernels/{kernel}/execute", {"code": code}, stop_after=3)
    assert events[-1]["type"] == "stream" and events[-1]["text"].startswith("before")  # maybe without its newline yet
    gate.touch()
    status, done = await until_complete(http, server, events[0]["request_url"])
    assert status == 200 and json.loads(done["outputs"])[0]["text"] == "before\nafter\n"


async def test_a_timeout_answers_with_the_outputs_so_far_and_the_kernel_serves_on(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str
) -> None:
    code = "import time\nprint('so far', flush=True)\ntime.sleep(60)"
    status, done, _ = await post(
        http, server, f"api/kernels/{kernel}/execute", {"code": code, "timeout": 1, "wait": True}
    )
    assert status == 200 and done["timed_out"] is True and done["status"] == "error"
    outputs = json.loads(done["outputs"])
    assert outputs[0]["text"] == "so far\n" and outputs[-1]["ename"] == "KeyboardInterrupt"
    status, after, _ = await post(
        http, server, f"api/kernels/{kernel}/execute", {"code": "print('next')", "wait": True}
    )
    assert status == 200 and after["status"] == "ok" and "next" in after["outputs"]


@pytest.mark.timeout(90)
async def test_a_timeout_the_interrupt_cannot_end_restarts_the_kernel(root_dir: Path) -> None:
    stubborn = (
        "import time\nprint('stubborn', flush=True)\n"
        "while True:\n    try:\n        time.sleep(60)\n    except KeyboardInterrupt:\n        pass"
    )
    async with serving(root_dir=str(root_dir), kernel_poll_interval=0.2) as srv, aiohttp.ClientSession() as http:
        kernel = await start_kernel(http, srv)
        await post(http, srv, f"api/kernels/{kernel}/execute", {"code": "x = 1", "wait": True})
        status, done, _ = await post(
            http, srv, f"api/kernels/{kernel}/execute", {"code": stubborn, "timeout": 1, "wait": True}
        )
        assert status == 500 and done["timed_out"] is True, done  # ended by Portico, not by the kernel
        assert "restarted" in done["error"] and "stubborn" in done["outputs"]
        status, after, _ = await post(
            http, srv, f"api/kernels/{kernel}/execute", {"code": "print('x' in dir())", "wait": True}
        )
        assert status == 200 and after["status"] == "ok" and "False" in after["outputs"]  # a new kernel


async def test_prefer_wait_answers_done_in_the_post_or_pending_when_it_runs_on(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str
) -> None:
    status, done, headers = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "2+2"}, Prefer="wait=30")
    assert status == 200 and headers["Preference-Applied"] == "wait=30" and '"4"' in done["outputs"]
    code = "import time\ntime.sleep(2)"
    status, pending, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": code}, Prefer="wait=0.1")
    assert status == 202 and pending["pending"] is True
    status, _ = await until_complete(http, server, pending["request_url"])
    assert status == 200


async def test_a_request_on_a_kernel_shut_down_ends_with_why(
    http: aiohttp.ClientSession, server: LocalServer, tmp_path: Path
) -> None:
    kernel = await start_kernel(http, server)
    _, running, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "import time\ntime.sleep(60)"})
    _, queued, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "1"})
    async with http.delete(server.url + f"api/kernels/{kernel}", headers=server.headers) as r:
        assert r.status == 204
    for request in (running, queued):
        status, done = await until_complete(http, server, request["request_url"])
        assert status == 500 and "shut down" in done["error"], done


async def test_one_shot_runs_on_a_fresh_kernel_that_is_then_shut_down(
    http: aiohttp.ClientSession, server: LocalServer
) -> None:
    status, first, _ = await post(http, server, "api/execute", {"code": "import os\nsecret = 1\nprint(os.getpid())"})
    assert status == 200 and first["status"] == "ok" and "kernel_id" not in first
    (stdout,) = first["outputs"]
    status, second, _ = await post(
        http, server, "api/execute", {"code": "import os\nprint(os.getpid(), 'secret' in dir())"}
    )
    assert second["outputs"][0]["text"].split() == [second["outputs"][0]["text"].split()[0], "False"]
    assert second["outputs"][0]["text"].split()[0] != stdout["text"].strip()

    async def none_left() -> bool:
        async with http.get(server.url + "api/kernels", headers=server.headers) as r:
            return await r.json() == []

    await eventually(none_left, "the one-shot kernels shut down")
    status, kept, _ = await post(http, server, "api/execute", {"code": "y = 41", "keep": True})
    assert status == 200 and kept["kernel_id"]
    _, after, _ = await post(http, server, f"api/kernels/{kept['kernel_id']}/execute", {"code": "y + 1", "wait": True})
    assert '"42"' in after["outputs"]
    status, timed, _ = await post(http, server, "api/execute", {"code": "import time\ntime.sleep(30)", "timeout": 0.5})
    assert status == 200 and timed["timed_out"] is True
    status, no_input, _ = await post(http, server, "api/execute", {"code": "input()"})
    assert no_input["status"] == "error" and no_input["outputs"][0]["ename"] == "StdinNotImplementedError"


async def test_one_shot_streams_too(http: aiohttp.ClientSession, server: LocalServer) -> None:
    events = await stream(http, server, "api/execute", {"code": "print('streamed')"})
    assert [e["type"] for e in events] == ["accepted", "running", "stream", "done"]
    assert "kernel_id" not in events[0] and events[-1]["status"] == "ok"


async def test_a_kernel_that_dies_mid_request_ends_it_with_why_and_serves_the_next(
    http: aiohttp.ClientSession, server: LocalServer, kernel: str
) -> None:
    code = "import os, time\nprint('pid', os.getpid(), flush=True)\ntime.sleep(60)"
    _, running, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": code})
    printed: list[str] = []

    async def pid_printed() -> bool:
        _, polled, _ = await get(http, server, running["request_url"])
        printed[:] = [o["text"] for o in json.loads(polled.get("outputs", "[]"))]
        return bool(printed) and printed[0].endswith("\n")

    await eventually(pid_printed, "the kernel's pid in the request's output")
    os.kill(int(printed[0].split()[1]), signal.SIGKILL)  # the kernel dies mid-request
    status, died = await until_complete(http, server, running["request_url"])
    assert status == 500 and "died" in died["error"] and "pid" in died["outputs"], died
    status, after, _ = await post(http, server, f"api/kernels/{kernel}/execute", {"code": "print('back')", "wait": 60})
    assert status == 200 and "back" in after["outputs"]  # on the kernel restarted in its place


async def test_bad_bodies_get_clear_errors(http: aiohttp.ClientSession, server: LocalServer, kernel: str) -> None:
    path = f"api/kernels/{kernel}/execute"
    for body, word in (
        ({"code": "1", "timeout": 0}, "timeout"),
        ({"code": "1", "timeout": "soon"}, "timeout"),
        ({"code": "1", "wait": -1}, "wait"),
        ({"code": "1", "metadata": []}, "metadata"),
        ({"code": "1", "server": {"url": "http://127.0.0.1:1"}}, "remote server"),
    ):
        status, answer, _ = await post(http, server, path, body)
        assert status == 400 and word in answer["message"], (body, answer)
    async with http.post(server.url + path, data=b"{not json", headers=server.headers) as r:
        assert r.status == 400 and "not valid JSON" in (await r.json())["message"]
    status, answer, _ = await post(http, server, "api/execute", {"code": "1", "keep": "yes"})
    assert status == 400 and "keep" in answer["message"]
    status, answer, _ = await post(http, server, "api/execute", {"code": "1", "kernel_name": "no-such-spec"})
    assert status == 404, answer
    status, done, _ = await post(http, server, path, {"code": "print('still serving')", "wait": 30})
    assert status == 200 and "still serving" in done["outputs"]
