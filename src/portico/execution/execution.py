"""Code over HTTP: an execution is one object, fed by its kernel's iopub fan-out.

Execution      one request: its state (queued, running, input, complete), its outputs so
               far as nbformat outputs, the input it waits for, and its end (status,
               execution_count, duration, timed_out).  Every event it takes is also handed
               to its listeners: polling, streaming (NDJSON, SSE), wait and MCP are views of
               it, not code paths of their own.
KernelQueue    the executions of one kernel, run one at a time in the order they came, each
               on its own shell and stdin sockets (one identity: the kernel's input_request
               comes back to it).  A request is over when its execute_reply and its status:
               idle have come.  Ended by the kernel's restart, death or shutdown (the relay's
               watchers), by its timeout (interrupt, then a restart if the interrupt does not
               bring the kernel back) or by a cancel (interrupt; a queued one never runs).
Executions     every kernel's queue, and finished requests kept for result_ttl seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import zmq

from ..errors import Conflict, NotFound
from ..kernels import wire
from ..kernels.relay import REPLY_GRACE, KernelRelay, msg_id_of

if TYPE_CHECKING:
    from ..kernels.kernel import Kernel
    from ..kernels.manager import Kernels

log = logging.getLogger("portico")

INTERRUPT_GRACE = 5.0  # s a timed-out request has, once interrupted, to end before its kernel is restarted
MAX_KEPT = 1000  # finished requests kept per kernel (each for result_ttl seconds)

Event = dict[str, Any]
OUTPUT_TYPES = {"stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"}


class Execution:
    """One execute request through the HTTP API, and everything it produced."""

    def __init__(
        self,
        kernel_id: str,
        code: str,
        metadata: dict[str, Any],
        timeout: float | None,
        base_url: str,
        silent: bool = False,
        store_history: bool = True,
        allow_stdin: bool = True,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.kernel_id = kernel_id
        self.code = code
        self.metadata = metadata
        self.timeout = timeout
        self.silent = silent
        self.store_history = store_history
        self.allow_stdin = allow_stdin
        self.url = f"{base_url}api/kernels/{kernel_id}/requests/{self.id}"
        self.input_url = f"{base_url}api/kernels/{kernel_id}/input"
        self.state = "queued"  # running, input, complete
        self.msg_id = ""
        self.outputs: list[dict[str, Any]] = []
        self._streams: dict[int, list[str]] = {}  # index of a stream output -> its text in pieces
        self._displays: dict[str, list[int]] = {}  # display_id -> indices of its outputs
        self._clear_pending = False  # clear_output(wait=True): cleared at the next output
        self.input_request: dict[str, Any] | None = None  # prompt, password, and the parent_header
        self.status: str | None = None  # the execute_reply's: ok, error, aborted
        self.execution_count: int | None = None
        self.failure: str | None = None  # why it ended without a reply of the kernel's, or was cut short
        self.timed_out = False
        self.cancelled = False
        self.started: float | None = None  # monotonic, when the kernel took it up
        self.ended: float | None = None
        self.finished_at = 0.0  # monotonic, for result_ttl
        self.listeners: list[Callable[[Event], None]] = []
        self.done = asyncio.Event()
        self._replied = False
        self._idle = False

    # what came from the kernel ---------------------------------------------------------------
    def on_iopub(self, parts: list[bytes]) -> None:
        msg_type = orjson.loads(parts[0]).get("msg_type")
        content = orjson.loads(parts[3])
        if msg_type == "status":
            state = content.get("execution_state")
            if state == "busy" and self.state == "queued":
                self._running()
            elif state == "idle":
                self._idle = True
                self._maybe_done()
            return
        if msg_type == "execute_input":
            if self.state == "queued":
                self._running()
            return
        if msg_type not in OUTPUT_TYPES:
            return
        metadata = orjson.loads(parts[2]) if parts[2] != b"{}" else {}
        self._take(msg_type, content, metadata)

    def _running(self) -> None:
        self.state = "running"
        self.started = time.monotonic()
        self._emit({"type": "running"})

    def _take(self, msg_type: str, content: dict[str, Any], metadata: dict[str, Any]) -> None:
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_pending = True
            else:
                self._clear()
            self._emit({"type": "clear_output", "wait": bool(content.get("wait"))})
            return
        if msg_type == "update_display_data":
            display_id = (content.get("transient") or {}).get("display_id")
            for i in self._displays.get(str(display_id), []):
                self.outputs[i]["data"] = content.get("data") or {}
                self.outputs[i]["metadata"] = content.get("metadata") or {}
            self._emit({"type": "update_display_data", **_bundle(content)})
            return
        if self._clear_pending:
            self._clear()
        if msg_type == "stream":
            name, text = content.get("name", "stdout"), str(content.get("text", ""))
            last = len(self.outputs) - 1
            if last >= 0 and last in self._streams and self.outputs[last]["name"] == name:
                self._streams[last].append(text)
            else:
                self._streams[len(self.outputs)] = [text]
                self.outputs.append({"output_type": "stream", "name": name, "text": ""})
            self._emit({"type": "stream", "name": name, "text": text})
            return
        if msg_type == "error":
            error: dict[str, Any] = {
                "output_type": "error",
                "ename": str(content.get("ename", "")),
                "evalue": str(content.get("evalue", "")),
                "traceback": list(content.get("traceback") or []),
            }
            self.outputs.append(error)
            self._emit({"type": "error", **{k: v for k, v in error.items() if k != "output_type"}})
            return
        output: dict[str, Any] = {
            "output_type": msg_type,
            "data": content.get("data") or {},
            "metadata": content.get("metadata") or {},
        }
        if msg_type == "execute_result":
            output["execution_count"] = content.get("execution_count")
            self.execution_count = content.get("execution_count")
        display_id = (content.get("transient") or {}).get("display_id")
        if display_id:
            self._displays.setdefault(display_id, []).append(len(self.outputs))
        self.outputs.append(output)
        self._emit({"type": msg_type, **_bundle(content)})

    def _clear(self) -> None:
        self.outputs, self._streams, self._displays, self._clear_pending = [], {}, {}, False

    def on_reply(self, content: dict[str, Any]) -> None:
        self._replied = True
        self.status = str(content.get("status", "error"))
        count = content.get("execution_count")
        self.execution_count = count if isinstance(count, int) else self.execution_count
        self._maybe_done()

    def on_input_request(self, parent: dict[str, Any], content: dict[str, Any]) -> None:
        if self.state == "queued":  # stdin can overtake iopub's busy: the kernel has taken it up
            self._running()
        self.state = "input"
        prompt, password = str(content.get("prompt", "")), bool(content.get("password", False))
        self.input_request = {"prompt": prompt, "password": password, "parent_header": parent}
        self._emit({"type": "input_request", "prompt": prompt, "password": password, "input_url": self.input_url})

    def input_sent(self) -> None:
        self.input_request = None
        if self.state == "input":
            self.state = "running"

    def _maybe_done(self) -> None:
        if self._replied and (self._idle or self.status == "aborted"):
            self.finish()

    def finish(self, failure: str | None = None) -> None:
        """Its end: the kernel's reply came, or (failure) it never will."""
        if self.state == "complete":
            return
        if failure is not None:
            self.failure = failure
            self.status = self.status or "error"
        self.state, self.input_request = "complete", None
        self.ended = self.finished_at = time.monotonic()
        self.done.set()
        self._emit({"type": "done", **self.ending()})

    @property
    def failed(self) -> bool:
        """It ended without the kernel's reply (jupyter-server-nbmodel answers those with 500)."""
        return self.state == "complete" and not self._replied and self.status == "error"

    # views -------------------------------------------------------------------------------
    def _emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            listener(event)

    def nb_outputs(self) -> list[dict[str, Any]]:
        outputs = list(self.outputs)
        for i, pieces in self._streams.items():
            if len(pieces) > 1:
                pieces[:] = ["".join(pieces)]
            outputs[i] = {**outputs[i], "text": pieces[0] if pieces else ""}
        return outputs

    def duration(self) -> float | None:
        if self.started is None:
            return None
        return round((self.ended or time.monotonic()) - self.started, 6)

    def ending(self) -> dict[str, Any]:
        end: dict[str, Any] = {
            "status": self.status,
            "execution_count": self.execution_count,
            "duration": self.duration(),
            "timed_out": self.timed_out,
        }
        if self.failure:
            end["reason"] = self.failure
        return end

    def context(self) -> dict[str, Any]:
        return {
            "request_id": self.id,
            "kernel_id": self.kernel_id,
            "request_url": self.url,
            "cell_id": self.metadata.get("cell_id"),
            "document_path": self.metadata.get("document_path"),
        }

    def model(self) -> dict[str, Any]:
        """What a poll answers: jupyter-server-nbmodel's shapes (outputs as a JSON string)."""
        if self.input_request is not None:
            return {
                "parent_header": self.input_request["parent_header"],
                "input_request": {k: self.input_request[k] for k in ("prompt", "password")},
                **self.context(),
                "pending": True,
                "request_status": "input",
                "input_url": self.input_url,
            }
        outputs = orjson.dumps(self.nb_outputs()).decode()
        if self.state != "complete":
            status = "queued" if self.state == "queued" else "running"
            return {**self.context(), "pending": True, "request_status": status, "outputs": outputs}
        done = {**self.ending(), "outputs": outputs, **self.context(), "pending": False, "request_status": "complete"}
        if self.failed:
            done["error"] = self.failure
        return done


def _bundle(content: dict[str, Any]) -> dict[str, Any]:
    event = {"data": content.get("data") or {}, "metadata": content.get("metadata") or {}}
    if content.get("transient"):
        event["transient"] = content["transient"]
    if "execution_count" in content:
        event["execution_count"] = content["execution_count"]
    return event


class KernelQueue:
    """The HTTP API's executions on one kernel, run one at a time in order."""

    def __init__(self, kernels: Kernels, kernel: Kernel) -> None:
        self.kernels = kernels
        self.kernel = kernel
        self.waiting: deque[Execution] = deque()
        self.current: Execution | None = None
        self._channels: tuple[zmq.asyncio.Socket, zmq.asyncio.Socket] | None = None  # shell, stdin
        self._connection: dict[str, Any] | None = None  # the relay's, when they were opened
        self._relay: KernelRelay | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._runner: asyncio.Task[None] | None = None

    def put(self, execution: Execution) -> None:
        self.waiting.append(execution)
        if self._runner is None or self._runner.done():
            # an idle queue sends at once, in its caller's step: the kernel starts while the
            # caller answers (the streamed response's first line, say); a queue's first request
            # waits in the runner for its sockets to connect
            sent = self._send(self.waiting.popleft()) if self._sendable() and self._connected() else None
            self._runner = asyncio.create_task(self._run_all(sent))

    async def _run_all(self, sent: Execution | None) -> None:
        while sent is not None or self.waiting:
            execution = sent or self.waiting.popleft()
            try:
                if sent is None:
                    if not await self._ready(execution):
                        continue
                    if execution.cancelled:  # while its sockets connected, or the kernel restarted
                        execution.status = "aborted"
                        execution.finish("Cancelled before it ran.")
                        continue
                    self._send(execution)
                await self._until_done(execution)
            except Exception as e:  # this request fails; the queue goes on
                log.exception("execution %s on kernel %s failed", execution.id, self.kernel.id)
                execution.finish(f"Portico failed to run it: {e}")
            finally:
                if self.kernel.relay is not None:
                    self.kernel.relay.taps.pop(execution.msg_id, None)
                self.current, sent = None, None

    def _sendable(self) -> bool:
        k = self.kernel
        return k.relay is not None and k.execution_state not in ("dead", "restarting") and self._listed()

    def _listed(self) -> bool:
        return self.kernels.kernels.get(self.kernel.id) is self.kernel

    async def _ready(self, execution: Execution) -> bool:
        """Until the kernel can take it on this queue's connected sockets; False if it ended unrun."""
        while True:
            await self._until_sendable(execution)
            if execution.done.is_set():
                return False
            if self._connected():
                return True
            relay = self.kernel.relay
            assert relay is not None
            await self._open(relay)

    async def _until_sendable(self, execution: Execution) -> None:
        """Until the kernel can take it (what is sent during a restart would reach the old
        kernel); it ends unrun if the kernel is dead or shut down."""
        while self.kernel.execution_state == "restarting":
            await asyncio.sleep(0.05)
        if self.kernel.relay is None or self.kernel.execution_state == "dead":
            execution.finish(f"Not run: the kernel is dead ({self.kernel.reason}).")
        elif not self._listed():
            execution.finish("Not run: the kernel was shut down.")

    def _send(self, execution: Execution) -> Execution:
        relay = self.kernel.relay
        assert relay is not None
        assert self._channels is not None
        self.current = execution
        shell, _ = self._channels
        request = wire.build(
            "execute_request",
            {
                "code": execution.code,
                "silent": execution.silent,
                "store_history": execution.store_history,
                "user_expressions": {},
                "allow_stdin": execution.allow_stdin,
                "stop_on_error": True,
            },
        )
        execution.msg_id = request.header["msg_id"]
        relay.taps[execution.msg_id] = execution.on_iopub
        relay.to_kernel(shell, "shell", request.parts)
        return execution

    def _connected(self) -> bool:
        relay = self.kernel.relay
        return self._channels is not None and relay is not None and self._connection is relay.connection

    async def _open(self, relay: KernelRelay) -> None:
        """This queue's shell and stdin sockets (one identity), kept from one run to the next
        until the kernel restarts, dies or is shut down (the relay's watchers say so).  Stdin is
        connected before anything is sent on shell: the kernel drops an input_request it has no
        route for, and the request would wait for its input for ever."""
        self._close()
        identity, connection = uuid.uuid4().hex.encode(), relay.connection
        stdin, handshake = relay.connect_watched(zmq.DEALER, "stdin", identity)
        shell = relay.connect(zmq.DEALER, "shell", identity)
        try:
            await handshake.wait()
        except BaseException:
            shell.close(linger=0)
            stdin.close(linger=0)
            raise
        if relay is not self.kernel.relay or relay.connection is not connection:
            shell.close(linger=0)  # it restarted meanwhile
            stdin.close(linger=0)
            return
        self._channels, self._connection, self._relay = (shell, stdin), connection, relay
        self._readers = [
            asyncio.create_task(self._replies(relay, shell)),
            asyncio.create_task(self._inputs(relay, stdin)),
        ]
        relay.watchers.add(self._ended)

    def _ended(self, why: str) -> None:
        """The kernel restarted, died or was shut down: what runs on it never gets its reply."""
        if self.current is not None:
            self.current.finish(why)
        self._close()

    def _close(self) -> None:
        for task in self._readers:
            task.cancel()
        for sock in self._channels or ():
            sock.close(linger=0)
        if self._relay is not None:
            self._relay.watchers.discard(self._ended)
        self._channels, self._readers, self._relay = None, [], None

    async def _until_done(self, execution: Execution) -> None:
        """Until it ends, enforcing its timeout once the kernel has taken it up."""
        while not execution.done.is_set():
            limit = None
            if execution.timeout is not None and execution.started is not None:
                limit = max(0.0, execution.started + execution.timeout - time.monotonic())
            try:
                async with asyncio.timeout(limit if limit is not None else 0.25):
                    await execution.done.wait()
            except TimeoutError:
                if limit is not None:
                    await self._expire(execution)
                    return
                if execution.cancelled and execution.started is not None:  # cancelled once sent: now it runs
                    execution.cancelled = False
                    await self.kernels.interrupt(self.kernel.id)
                if execution._idle and not execution._replied:
                    await self._reply_grace(execution)

    async def _reply_grace(self, execution: Execution) -> None:
        """Its idle came but no reply: ipykernel loses the reply of an interrupt that lands while it
        sends it.  Past REPLY_GRACE the request ends with what it printed."""
        try:
            async with asyncio.timeout(REPLY_GRACE):
                await execution.done.wait()
        except TimeoutError:
            execution.finish("The kernel ended this request without a reply; its output is all there is.")

    async def _expire(self, execution: Execution) -> None:
        execution.timed_out = True
        log.info(
            "execution %s on kernel %s passed its timeout of %g s", execution.id, self.kernel.id, execution.timeout
        )
        try:
            await self.kernels.interrupt(self.kernel.id)
            async with asyncio.timeout(INTERRUPT_GRACE):
                await execution.done.wait()
            return
        except TimeoutError:
            pass
        except Exception as e:  # the interrupt itself failed (a remote kernel's host unreachable, say)
            log.warning("kernel %s: interrupt after a timed-out request failed: %s", self.kernel.id, e)
        if not self._listed():
            return  # shut down meanwhile: its watcher ended the request
        why = f"The request passed its timeout of {execution.timeout:g} s and the interrupt did not end it"
        execution.finish(why + "; the kernel was restarted.")
        try:
            await self.kernels.restart(self.kernel.id)
        except Exception as e:
            log.warning("kernel %s: restart after a timed-out request failed: %s", self.kernel.id, e)

    async def _replies(self, relay: KernelRelay, shell: zmq.asyncio.Socket) -> None:
        while True:
            parts = relay.accept(await shell.recv_multipart(), "shell")
            execution = self.current
            if parts is not None and execution is not None and msg_id_of(parts[1]) == execution.msg_id:
                execution.on_reply(orjson.loads(parts[3]))

    async def _inputs(self, relay: KernelRelay, stdin: zmq.asyncio.Socket) -> None:
        while True:
            parts = relay.accept(await stdin.recv_multipart(), "stdin")
            execution = self.current
            if parts is None or execution is None or msg_id_of(parts[1]) != execution.msg_id:
                continue
            if orjson.loads(parts[0]).get("msg_type") == "input_request":
                execution.on_input_request(orjson.loads(parts[0]), orjson.loads(parts[3]))

    def send_input(self, value: str) -> Execution:
        execution, relay = self.current, self._relay
        if execution is None or execution.input_request is None or relay is None or self._channels is None:
            raise Conflict(f"No execution on kernel {self.kernel.id} is waiting for input.")
        reply = wire.build("input_reply", {"value": value}, execution.input_request["parent_header"])
        relay.to_kernel(self._channels[1], "stdin", reply.parts)
        execution.input_sent()
        return execution

    async def cancel(self, execution: Execution) -> None:
        if execution in self.waiting:
            self.waiting.remove(execution)
            execution.status = "aborted"
            execution.finish("Cancelled before it ran.")
        elif execution.done.is_set():
            return
        elif execution is self.current and execution.started is not None:
            await self.kernels.interrupt(self.kernel.id)
        else:  # sent, but the kernel still runs another client's request; or about to be sent
            execution.cancelled = True


class Executions:
    """Every kernel's executions through the HTTP API; finished ones kept for result_ttl seconds."""

    def __init__(self, kernels: Kernels, base_url: str, result_ttl: float) -> None:
        self.kernels = kernels
        self.base_url = base_url
        self.result_ttl = result_ttl
        self.queues: dict[str, KernelQueue] = {}
        self._purged = time.monotonic()
        self.requests: dict[str, OrderedDict[str, Execution]] = {}  # kernel id -> request id -> execution

    def submit(
        self,
        kernel_id: str,
        code: str,
        metadata: dict[str, Any] | None = None,
        timeout: float | None = None,
        silent: bool = False,
        store_history: bool = True,
        allow_stdin: bool = True,
    ) -> Execution:
        kernel = self.kernels.get(kernel_id)
        if kernel.execution_state == "dead":
            raise NotFound(f"Kernel {kernel_id} is dead: {kernel.reason}.", "Kernel Dead")
        execution = Execution(
            kernel_id, code, metadata or {}, timeout, self.base_url, silent, store_history, allow_stdin
        )
        queue = self.queues.get(kernel_id)
        if queue is None or queue.kernel is not kernel:
            queue = self.queues[kernel_id] = KernelQueue(self.kernels, kernel)
        self._forget_old(kernel_id)
        if time.monotonic() - self._purged > min(10.0, self.result_ttl):
            self._purge()
        self.requests.setdefault(kernel_id, OrderedDict())[execution.id] = execution
        queue.put(execution)
        return execution

    def get(self, kernel_id: str, request_id: str) -> Execution:
        kept = self.requests.get(kernel_id)
        execution = kept.get(request_id) if kept is not None else None
        if execution is None or self._expired(execution):
            raise NotFound(f"Execution request {request_id} for kernel {kernel_id} does not exist.")
        return execution

    def active(self, kernel_id: str) -> list[Execution]:
        return [e for e in self.requests.get(kernel_id, {}).values() if e.state != "complete"]

    def send_input(self, kernel_id: str, value: str) -> Execution:
        self.kernels.get(kernel_id)
        queue = self.queues.get(kernel_id)
        if queue is None:
            raise Conflict(f"No execution on kernel {kernel_id} is waiting for input.")
        return queue.send_input(value)

    async def cancel(self, kernel_id: str, request_id: str) -> None:
        execution = self.get(kernel_id, request_id)
        queue = self.queues.get(kernel_id)
        if queue is not None:
            await queue.cancel(execution)

    def _expired(self, execution: Execution) -> bool:
        return execution.state == "complete" and time.monotonic() - execution.finished_at > self.result_ttl

    def _forget_old(self, kernel_id: str) -> None:
        requests = self.requests.get(kernel_id)
        if not requests:
            return
        for request_id in [i for i, e in requests.items() if self._expired(e)]:
            del requests[request_id]
        finished = [i for i, e in requests.items() if e.state == "complete"]
        for request_id in finished[: max(0, len(finished) - MAX_KEPT)]:
            del requests[request_id]

    def _purge(self) -> None:
        """Forget the kernels that are gone once nothing of theirs is kept any more."""
        self._purged = time.monotonic()
        for kernel_id in list(self.requests):
            self._forget_old(kernel_id)
            if not self.requests[kernel_id] and kernel_id not in self.kernels.kernels:
                del self.requests[kernel_id]
                self.queues.pop(kernel_id, None)
