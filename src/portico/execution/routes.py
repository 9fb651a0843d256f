"""Code over plain HTTP: jupyter-server-nbmodel's routes, and Portico's streaming, wait and one-shot runs.

POST   /api/kernels/{id}/execute            202 + Location of the request (nbmodel); with
                                            Accept: application/x-ndjson or text/event-stream
                                            the events stream in this response; with
                                            Prefer: wait=N (or "wait" in the body) the result
                                            comes in it when the run ends within N s
GET    /api/kernels/{id}/execute            the kernel's requests not yet complete
GET    /api/kernels/{id}/requests/{rid}     202 pending, 300 waiting for input, 200 done,
                                            500 ended without the kernel's reply (nbmodel's)
DELETE /api/kernels/{id}/requests/{rid}     cancel: a queued one never runs, a running one is interrupted
POST   /api/kernels/{id}/input              {"input": ...} to the request that waits for it
POST   /api/execute                         one-shot: a kernel from the warm pool, the code, then
                                            the kernel is shut down (or kept, "keep": true)
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest
from ..kernels.manager import Kernels
from ..kernels.requests import start_request
from ..settings import Settings
from ..web.jsonio import json_body, json_response
from .execution import Event, Execution, Executions

log = logging.getLogger("portico")

NDJSON, SSE = "application/x-ndjson", "text/event-stream"
PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*([0-9]+(?:\.[0-9]+)?)", re.IGNORECASE)
MAX_WAIT = 3600.0


class ExecutionRoutes:
    def __init__(self, settings: Settings, kernels: Kernels, executions: Executions) -> None:
        self.settings = settings
        self.kernels = kernels
        self.executions = executions
        self._disposals: set[asyncio.Task[None]] = set()

    def add_to(self, router: web.UrlDispatcher) -> None:
        b = self.settings.base_url
        router.add_route("POST", b + "api/kernels/{id}/execute", self.submit)
        router.add_route("GET", b + "api/kernels/{id}/execute", self.active)
        router.add_route("GET", b + "api/kernels/{id}/requests/{rid}", self.poll)
        router.add_route("DELETE", b + "api/kernels/{id}/requests/{rid}", self.cancel)
        router.add_route("POST", b + "api/kernels/{id}/input", self.input)
        router.add_route("POST", b + "api/execute", self.one_shot)

    # jupyter-server-nbmodel's --------------------------------------------------------------
    async def submit(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        code, metadata, timeout, wait = self._read(body, self.settings.execution_timeout)
        if body.get("server") is not None:
            raise BadRequest('Portico runs its own kernels: a remote server ("server") is not supported.')
        execution = self.executions.submit(request.match_info["id"], code, metadata, timeout)
        return await self._answer(request, execution, wait)

    async def active(self, request: web.Request) -> web.Response:
        kernel_id = request.match_info["id"]
        self.kernels.get(kernel_id)
        return json_response(
            {"kernel_id": kernel_id, "requests": [e.model() for e in self.executions.active(kernel_id)]}
        )

    async def poll(self, request: web.Request) -> web.Response:
        return self._polled(self.executions.get(request.match_info["id"], request.match_info["rid"]))

    async def cancel(self, request: web.Request) -> web.Response:
        await self.executions.cancel(request.match_info["id"], request.match_info["rid"])
        return web.Response(status=204)

    async def input(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        value = body.get("input")
        if not isinstance(value, str):
            raise BadRequest("input must be the text to send (a string).")
        execution = self.executions.send_input(request.match_info["id"], value)
        return json_response(execution.context(), status=201)

    # one-shot -----------------------------------------------------------------------------
    async def one_shot(self, request: web.Request) -> web.StreamResponse:
        body = await json_body(request)
        code, metadata, timeout, _ = self._read(body, self.settings.one_shot_timeout)
        keep = body.get("keep", False)
        if not isinstance(keep, bool):
            raise BadRequest("keep must be true or false.")
        name = body.get("kernel_name", body.get("name"))
        stream = self._streamed(request)
        kernel = await self.kernels.start(start_request(self.settings, name))
        try:  # input can be asked for only where its client sees the request: streamed, or kept
            execution = self.executions.submit(kernel.id, code, metadata, timeout, allow_stdin=bool(stream or keep))
        except BaseException:
            await self.kernels.shutdown(kernel.id, "one-shot run failed to start")
            raise
        if not keep:  # shut down when the run ends, whether or not its client is still there
            execution.listeners.append(lambda event: self._dispose_after(event, kernel.id))
        if stream:
            return await self._stream(request, execution, stream == SSE, kept=keep)
        await execution.done.wait()
        answer = {**execution.context(), **execution.ending(), "outputs": execution.nb_outputs()}
        if not keep:
            del answer["kernel_id"], answer["request_url"]
        if execution.failed:
            answer["error"] = execution.failure
        return json_response(answer, status=200)

    def _dispose_after(self, event: Event, kernel_id: str) -> None:
        if event["type"] != "done":
            return
        task = asyncio.create_task(self._dispose(kernel_id))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _dispose(self, kernel_id: str) -> None:
        if kernel_id in self.kernels.kernels:
            try:
                await self.kernels.shutdown(kernel_id, "shut down after its one-shot run")
            except Exception as e:
                log.warning("kernel %s: shutdown after a one-shot run failed: %s", kernel_id, e)

    # views of one execution ------------------------------------------------------------------
    def _read(self, body: dict[str, Any], default_timeout: float) -> tuple[str, dict[str, Any], float | None, float]:
        code = body.get("code")
        if not isinstance(code, str):
            raise BadRequest("code must be the code to run (a string).")
        metadata = body.get("metadata")
        metadata = {} if metadata is None else metadata
        if not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object.")
        timeout = body.get("timeout", default_timeout or None)
        if timeout is not None and not _seconds(timeout):
            raise BadRequest("timeout must be a number of seconds greater than 0 (or null for none).")
        wait = body.get("wait", 0)
        if wait is True:
            wait = MAX_WAIT
        if wait is False or wait is None:
            wait = 0
        if not _seconds(wait, zero=True):
            raise BadRequest("wait must be a number of seconds (0 to answer at once) or true.")
        return code, metadata, float(timeout) if timeout is not None else None, min(float(wait), MAX_WAIT)

    async def _answer(self, request: web.Request, execution: Execution, wait: float) -> web.StreamResponse:
        stream = self._streamed(request)
        if stream:
            return await self._stream(request, execution, stream == SSE)
        prefer = PREFER_WAIT.search(request.headers.get("Prefer", ""))
        if prefer:
            wait = min(float(prefer.group(1)), MAX_WAIT)
        headers = {"Location": execution.url, "Access-Control-Expose-Headers": "Location"}
        if wait <= 0:
            return json_response(execution.model(), status=202, headers=headers)
        await _settled(execution, wait)
        headers["Preference-Applied"] = f"wait={wait:g}"
        return self._polled(execution, headers)

    @staticmethod
    def _polled(execution: Execution, headers: dict[str, str] | None = None) -> web.Response:
        model = execution.model()
        if model.get("request_status") == "input":
            return json_response(
                model,
                status=300,
                headers={
                    **(headers or {}),
                    "Location": execution.input_url,
                    "Access-Control-Expose-Headers": "Location",
                },
            )
        if execution.state != "complete":
            return json_response(model, status=202, headers=headers)
        return json_response(model, status=500 if execution.failed else 200, headers=headers)

    @staticmethod
    def _streamed(request: web.Request) -> str | None:
        """The streaming format the client asked for in Accept, first listed first."""
        for part in request.headers.get("Accept", "").split(","):
            kind = part.split(";")[0].strip().lower()
            if kind in (NDJSON, SSE):
                return kind
        return None

    async def _stream(
        self, request: web.Request, execution: Execution, sse: bool, kept: bool = True
    ) -> web.StreamResponse:
        """One event per output as it happens; the last one, "done", has the status. A client
        that goes away stops only this view: the run goes on, and stays pollable."""
        events: list[Event] = []
        woken = asyncio.Event()

        def listen(event: Event) -> None:
            events.append(event)
            woken.set()

        execution.listeners.append(listen)  # before any await: no event is missed
        response = web.StreamResponse(
            headers={
                "Content-Type": SSE if sse else NDJSON,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
                "Location": execution.url,
                "Access-Control-Expose-Headers": "Location",
            }
        )
        accepted: Event = {"type": "accepted", **execution.context()}
        if not kept:
            del accepted["kernel_id"], accepted["request_url"]
        try:
            await response.prepare(request)
            await response.write(_encoded(accepted, sse))
            ended = False
            while not ended:
                if not events:
                    woken.clear()
                    await woken.wait()
                batch, events[:] = events[:], []
                ended = any(event["type"] == "done" for event in batch)
                await response.write(b"".join(_encoded(event, sse) for event in batch))
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            log.info("execution %s: its streaming client went away; the run goes on", execution.id)
        finally:
            execution.listeners.remove(listen)
        return response


async def _settled(execution: Execution, wait: float) -> None:
    """Until the run ends or asks for input (which only its client can give), at most wait seconds."""
    settled = asyncio.Event()

    def listen(event: Event) -> None:
        if event["type"] in ("done", "input_request"):
            settled.set()

    if execution.state == "complete" or execution.input_request is not None:
        return
    execution.listeners.append(listen)
    try:
        async with asyncio.timeout(wait):
            await settled.wait()
    except TimeoutError:
        pass
    finally:
        execution.listeners.remove(listen)


def _encoded(event: Event, sse: bool) -> bytes:
    data: bytes = orjson.dumps(event)
    if sse:
        return b"event: " + str(event["type"]).encode() + b"\ndata: " + data + b"\n\n"
    return data + b"\n"


def _seconds(value: Any, zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0
