"""A Python client for Portico's code-over-HTTP API.

    from portico.client import Client
    with Client("http://127.0.0.1:8888/", token="...") as portico:
        result = portico.run("print(6*7)")          # one-shot: a fresh kernel from the warm pool
        kernel = portico.start_kernel()             # or a kernel that keeps its state
        portico.run("x = 1", kernel=kernel)
        print(portico.run("x + 1", kernel=kernel).text)

`AsyncClient` is the client; `Client` runs the same coroutines on a loop of its own, for plain
scripts (callbacks are then called in the caller's thread).  A run streams its events
(NDJSON), so on_stdout, on_stderr and on_output are called as the output happens, and
on_input answers the kernel's input() (without it, input() fails in the kernel at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin

import aiohttp
import orjson

T = TypeVar("T")
Output = dict[str, Any]


class PorticoError(Exception):
    """Portico answered with an error: its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Error:
    name: str
    value: str
    traceback: list[str]


@dataclass
class Result:
    """What a run produced: nbformat outputs, and the same read out for convenience."""

    status: str | None = None  # ok, error, aborted
    execution_count: int | None = None
    outputs: list[Output] = field(default_factory=list)
    timed_out: bool = False
    duration: float | None = None
    request_id: str = ""
    kernel_id: str | None = None  # the kernel it ran on (a one-shot run's only when kept)
    reason: str | None = None  # why it ended without the kernel's reply, if it did

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def stdout(self) -> str:
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(o["text"] for o in self.outputs if o["output_type"] == "stream" and o["name"] == "stderr")

    @property
    def results(self) -> list[dict[str, Any]]:
        """The MIME bundles of the execute result and the displays, in order."""
        return [o["data"] for o in self.outputs if o["output_type"] in ("execute_result", "display_data")]

    @property
    def result(self) -> dict[str, Any] | None:
        """The execute result's MIME bundle (the value of the last expression), if any."""
        return next((o["data"] for o in self.outputs if o["output_type"] == "execute_result"), None)

    @property
    def text(self) -> str | None:
        """The execute result as text/plain."""
        return (self.result or {}).get("text/plain")

    @property
    def error(self) -> Error | None:
        for o in self.outputs:
            if o["output_type"] == "error":
                return Error(o["ename"], o["evalue"], o["traceback"])
        if self.reason and self.status == "error":
            return Error("PorticoError", self.reason, [])
        return None


class _Collector:
    """Builds a Result from a run's events (the same merging Portico does for its polls)."""

    def __init__(
        self,
        on_stdout: Callable[[str], Any] | None,
        on_stderr: Callable[[str], Any] | None,
        on_output: Callable[[Output], Any] | None,
    ) -> None:
        self.result = Result()
        self.on_stdout, self.on_stderr, self.on_output = on_stdout, on_stderr, on_output
        self._clear_pending = False

    def take(self, event: dict[str, Any]) -> None:
        kind, outputs = event["type"], self.result.outputs
        if kind == "accepted":
            self.result.request_id, self.result.kernel_id = event["request_id"], event.get("kernel_id")
        elif kind == "done":
            self.result.status = event.get("status")
            self.result.execution_count = event.get("execution_count")
            self.result.timed_out = bool(event.get("timed_out"))
            self.result.duration = event.get("duration")
            self.result.reason = event.get("reason")
        elif kind == "clear_output":
            if event.get("wait"):
                self._clear_pending = True
            else:
                outputs.clear()
        elif kind == "update_display_data":
            display_id = (event.get("transient") or {}).get("display_id")
            for o in outputs:
                if o.get("_display_id") == display_id:
                    o["data"], o["metadata"] = event["data"], event["metadata"]
        elif kind in ("stream", "display_data", "execute_result", "error"):
            if self._clear_pending:
                outputs.clear()
                self._clear_pending = False
            output = self._output(kind, event)
            if (
                kind == "stream"
                and outputs
                and outputs[-1]["output_type"] == "stream"
                and outputs[-1]["name"] == output["name"]
            ):
                outputs[-1]["text"] += output["text"]
            else:
                outputs.append(output)
            if kind == "stream":
                callback = self.on_stdout if output["name"] == "stdout" else self.on_stderr
                if callback is not None:
                    callback(output["text"])
            if self.on_output is not None:
                self.on_output({k: v for k, v in output.items() if not k.startswith("_")})

    @staticmethod
    def _output(kind: str, event: dict[str, Any]) -> Output:
        if kind == "stream":
            return {"output_type": "stream", "name": event["name"], "text": event["text"]}
        if kind == "error":
            return {
                "output_type": "error",
                "ename": event["ename"],
                "evalue": event["evalue"],
                "traceback": event["traceback"],
            }
        output: Output = {"output_type": kind, "data": event["data"], "metadata": event["metadata"]}
        if kind == "execute_result":
            output["execution_count"] = event.get("execution_count")
        display_id = (event.get("transient") or {}).get("display_id")
        if display_id:
            output["_display_id"] = display_id
        return output

    def finished(self) -> Result:
        for o in self.result.outputs:
            o.pop("_display_id", None)
        return self.result


class AsyncClient:
    """Portico's HTTP API from async code: kernels, runs (streamed), one-shot runs."""

    def __init__(self, url: str, token: str | None = None, timeout: float | None = None) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self.timeout = timeout  # default per-run timeout, seconds
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(headers=self.headers, timeout=aiohttp.ClientTimeout(total=None))
        return self._http

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, urljoin(self.url, path), json=body) as r:
            data = await r.read()
            if r.status >= 400:
                raise PorticoError(r.status, _message(data))
            return orjson.loads(data) if data else None

    # kernels ---------------------------------------------------------------------------
    async def kernelspecs(self) -> dict[str, Any]:
        specs: dict[str, Any] = await self._call("GET", "api/kernelspecs")
        return specs

    async def kernels(self) -> list[dict[str, Any]]:
        kernels: list[dict[str, Any]] = await self._call("GET", "api/kernels")
        return kernels

    async def start_kernel(self, name: str | None = None) -> str:
        """A new kernel (from the warm pool when there is one); its id."""
        model = await self._call("POST", "api/kernels", {"name": name} if name else {})
        return str(model["id"])

    async def stop_kernel(self, kernel: str) -> None:
        await self._call("DELETE", f"api/kernels/{kernel}")

    async def interrupt(self, kernel: str) -> None:
        await self._call("POST", f"api/kernels/{kernel}/interrupt")

    async def restart(self, kernel: str) -> None:
        await self._call("POST", f"api/kernels/{kernel}/restart")

    # runs ------------------------------------------------------------------------------
    async def run(
        self,
        code: str,
        kernel: str | None = None,
        *,
        timeout: float | None = None,
        kernel_name: str | None = None,
        keep: bool = False,
        on_stdout: Callable[[str], Any] | None = None,
        on_stderr: Callable[[str], Any] | None = None,
        on_output: Callable[[Output], Any] | None = None,
        on_input: Callable[[str, bool], str | Awaitable[str]] | None = None,
    ) -> Result:
        """Run code on kernel, or, without one, one-shot on a fresh kernel (kept with keep=True:
        its id is then result.kernel_id).  on_input(prompt, password) answers input()."""
        body: dict[str, Any] = {"code": code}
        if timeout or self.timeout:
            body["timeout"] = timeout or self.timeout
        if kernel is None:
            path = "api/execute"
            body["keep"] = keep
            if kernel_name:
                body["kernel_name"] = kernel_name
        else:
            path = f"api/kernels/{kernel}/execute"
        collector = _Collector(on_stdout, on_stderr, on_output)
        headers = {"Accept": "application/x-ndjson"}
        async with self.http.post(self.url + path, json=body, headers=headers) as r:
            if r.status >= 400:
                raise PorticoError(r.status, _message(await r.read()))
            async for line in r.content:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                if event["type"] == "input_request":
                    await self._answer(event, on_input)
                collector.take(event)
        return collector.finished()

    async def _answer(self, event: dict[str, Any], on_input: Callable[[str, bool], Any] | None) -> None:
        value: Any = ""
        if on_input is not None:
            value = on_input(event["prompt"], event["password"])
            if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
                value = await value
        await self._call("POST", event["input_url"], {"input": str(value)})


class Client:
    """The same client for plain (blocking) code: each call runs AsyncClient's coroutine on a loop
    of this client's own, in the calling thread."""

    def __init__(self, url: str, token: str | None = None, timeout: float | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self.aio = AsyncClient(url, token, timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _do(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._do(self.aio.close())
            self._loop.close()

    def kernelspecs(self) -> dict[str, Any]:
        return self._do(self.aio.kernelspecs())

    def kernels(self) -> list[dict[str, Any]]:
        return self._do(self.aio.kernels())

    def start_kernel(self, name: str | None = None) -> str:
        return self._do(self.aio.start_kernel(name))

    def stop_kernel(self, kernel: str) -> None:
        self._do(self.aio.stop_kernel(kernel))

    def interrupt(self, kernel: str) -> None:
        self._do(self.aio.interrupt(kernel))

    def restart(self, kernel: str) -> None:
        self._do(self.aio.restart(kernel))

    def run(self, code: str, kernel: str | None = None, **options: Any) -> Result:
        """See AsyncClient.run."""
        return self._do(self.aio.run(code, kernel, **options))


def _message(data: bytes) -> str:
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode(errors="replace")[:500]
    return str(body.get("message") or body.get("reason") or body) if isinstance(body, dict) else str(body)
