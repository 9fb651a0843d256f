"""The kernels behind one notebook: a pool that grows on demand, and a worker per kernel.

A request gets a worker to itself.  The worker sends every step of the request at once
(set REQUEST, the endpoint cell, its ResponseInfo cell) on one shell socket: the kernel
runs them in order, so one round trip does what Kernel Gateway does in three.  A run is
over when every step has its execute_reply and its status: idle on iopub (an aborted step,
one after a failing cell, has no output to wait for).

    start:   an idle worker runs the request at once; else the pool grows (up to maximum)
             and the request waits in a bounded queue; a full queue is a 503 at once
    release: when a run ends, its worker starts the first queued request there and then
             (no task has to wake first), else goes idle; extra idle workers end after idle_timeout
    abandon: a run over its timeout: the kernel is interrupted; the worker serves again once
             its steps have ended, else (and when its kernel died) a fresh, seeded one replaces it
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import zmq

from ..errors import Unavailable
from ..kernels import wire
from ..kernels.kernel import Kernel, death_of
from .exchange import Outputs

log = logging.getLogger("portico")

RETRY_AFTER = "1"  # seconds, for a request turned away by a full queue


@dataclass(frozen=True)
class Step:
    code: str
    silent: bool = False
    expressions: dict[str, str] = field(default_factory=dict)  # user_expressions, evaluated after the code


class KernelDied(Exception):
    """The worker's kernel process ended during a run."""


class Run:
    """The steps of one request on one kernel, and what they produced."""

    def __init__(self, ids: list[str], on_done: Callable[[Run], None]) -> None:
        self.ids = ids
        self.outputs = {i: Outputs() for i in ids}
        self.replies: dict[str, str] = {}
        self.idle: set[str] = set()
        self.started = asyncio.get_running_loop().time()  # the request's timeout counts from here
        self.abandoned = False  # timed out or given up: its worker is recovered, not handed on
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._on_done = on_done

    @property
    def results(self) -> list[Outputs]:
        return [self.outputs[i] for i in self.ids]

    def on_iopub(self, parts: list[bytes]) -> None:
        parent = orjson.loads(parts[1]).get("msg_id")
        msg_type = orjson.loads(parts[0]).get("msg_type")
        content = orjson.loads(parts[3])
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                self.idle.add(parent)
                self._check()
        elif parent in self.outputs:
            self.outputs[parent].take(msg_type, content)

    def on_reply(self, parent: str, content: dict[str, Any]) -> None:
        if parent in self.outputs:
            self.replies[parent] = str(content.get("status", ""))
            self.outputs[parent].expressions = content.get("user_expressions") or {}
            self._check()

    def _check(self) -> None:
        if (
            len(self.replies) == len(self.ids)
            and not self.finished.done()
            and all(i in self.idle or self.replies[i] == "aborted" for i in self.ids)
        ):
            self.finished.set_result(None)
            self._on_done(self)

    def fail(self, error: BaseException) -> None:
        if not self.finished.done():
            self.finished.set_exception(error)
            self.finished.exception()  # retrieved here: its request may have gone


class Worker:
    """One kernel of a notebook's pool and the shell socket it is driven through.

    When a run ends, the worker goes straight back to its pool (on_idle), which hands it the
    next queued request there and then: the kernel is fed without waiting for any task to wake.
    """

    def __init__(self, kernel: Kernel, poll_interval: float) -> None:
        assert kernel.relay is not None
        self.kernel = kernel
        self.relay = kernel.relay
        self.shell = self.relay.connect(zmq.DEALER, "shell", uuid.uuid4().hex.encode())
        self.last_used = time.monotonic()
        self.died = False
        self.retired = False  # replaced by a reload, or not trusted after a timeout: ended on release
        self.run: Run | None = None
        self.on_idle: Callable[[Worker], None] = lambda worker: None
        self._tasks = [asyncio.create_task(self._read_replies()), asyncio.create_task(self._watch(poll_interval))]

    def start(self, steps: list[Step]) -> Run:
        """Send the steps; the kernel runs them in order. Await the run's finished future,
        which fails with KernelDied if the kernel dies first."""
        requests = [
            wire.build(
                "execute_request",
                {
                    "code": step.code,
                    "silent": step.silent,
                    "store_history": False,
                    "user_expressions": step.expressions,
                    "allow_stdin": False,
                    "stop_on_error": True,
                },
            )
            for step in steps
        ]
        run = self.run = Run([r.header["msg_id"] for r in requests], self._done)
        if self.died:
            run.fail(KernelDied("the kernel had died"))
            return run
        for msg_id in run.ids:
            self.relay.taps[msg_id] = run.on_iopub
        for request in requests:
            self.relay.to_kernel(self.shell, "shell", request.parts)
        return run

    def _done(self, run: Run) -> None:
        self._forget(run)
        if not run.abandoned:
            self.on_idle(self)

    async def settle(self, run: Run, grace: float) -> bool:
        """After an interrupt: whether the abandoned run ended within grace seconds."""
        try:
            async with asyncio.timeout(grace):
                await asyncio.shield(run.finished)
        except (TimeoutError, KernelDied):
            return False
        return True

    def _forget(self, run: Run) -> None:
        for msg_id in run.ids:
            self.relay.taps.pop(msg_id, None)
        if self.run is run:
            self.run = None

    async def interrupt(self) -> None:
        await self.kernel.km.interrupt_kernel()

    async def _read_replies(self) -> None:
        while True:
            parts = self.relay.accept(await self.shell.recv_multipart(), "shell")
            run = self.run
            if parts is not None and run is not None:
                run.on_reply(orjson.loads(parts[1]).get("msg_id"), orjson.loads(parts[3]))

    async def _watch(self, interval: float) -> None:
        await death_of(self.kernel, interval)
        self.died = True
        if self.run is not None:
            self.run.fail(KernelDied("the kernel process exited"))

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.shell.close(linger=0)


@dataclass(eq=False)
class Job:
    """A request waiting in a pool's queue: started on the first worker released."""

    steps: list[Step]
    started: asyncio.Future[tuple[Worker, Run]]


class KernelPool:
    """Workers for one version of one notebook."""

    def __init__(
        self,
        name: str,
        launch: Callable[[], Awaitable[Worker]],
        dispose: Callable[[Worker, str], Coroutine[Any, Any, None]],
        minimum: int,
        maximum: int,
        queue_size: int,
        idle_timeout: float,
    ) -> None:
        self.name = name
        self.launch = launch
        self.dispose = dispose
        self.minimum, self.maximum = minimum, maximum
        self.queue_size = queue_size
        self.idle_timeout = idle_timeout
        self.workers: set[Worker] = set()
        self.idle: list[Worker] = []
        self.starting = 0
        self.waiters: deque[Job] = deque()
        self.retiring = False
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()  # recoveries and starts: cancelled at close
        self._disposals: set[asyncio.Task[None]] = set()  # kernels being ended: awaited at close, never cut
        self._shrinker: asyncio.Task[None] | None = None

    async def fill(self) -> None:
        """Start the minimum number of workers; raises the first start failure."""
        workers = await asyncio.gather(*(self.launch() for _ in range(self.minimum)), return_exceptions=True)
        failures = [w for w in workers if isinstance(w, BaseException)]
        for worker in workers:
            if isinstance(worker, Worker):
                self._adopt(worker)
                self.idle.append(worker)
        if failures:
            raise failures[0]
        self._shrinker = asyncio.create_task(self._shrink_loop())

    def counts(self) -> dict[str, int]:
        return {
            "kernels": len(self.workers),
            "idle": len(self.idle),
            "starting": self.starting,
            "queued": len(self.waiters),
        }

    async def start(self, steps: list[Step]) -> tuple[Worker, Run]:
        """A worker running the steps: at once if one is idle, else after a wait in the queue."""
        while self.idle:
            worker = self.idle.pop()
            if not worker.died:
                return worker, worker.start(steps)
            self._discard(worker, "died while idle")
        if len(self.waiters) >= self.queue_size:
            raise Unavailable(
                f"All {len(self.workers)} kernels of {self.name} are busy and {len(self.waiters)} "
                "requests are queued (notebook_pool_max, notebook_queue_size); try again shortly.",
                "Queue Full",
                headers={"Retry-After": RETRY_AFTER},
            )
        job = Job(steps, asyncio.get_running_loop().create_future())
        self.waiters.append(job)
        self._grow()
        try:
            return await job.started
        except asyncio.CancelledError:
            if job.started.done() and not job.started.cancelled() and job.started.exception() is None:
                worker, run = job.started.result()
                self.abandon(worker, run, 0)
            elif job in self.waiters:
                self.waiters.remove(job)
            raise

    def release(self, worker: Worker) -> None:
        if worker.died or worker.retired:
            self._discard(worker, "died" if worker.died else "retired")
            self._grow()
            return
        worker.last_used = time.monotonic()
        while self.waiters:
            job = self.waiters.popleft()
            if not job.started.done():
                job.started.set_result((worker, worker.start(job.steps)))
                return
        if self.retiring:
            self._discard(worker, "replaced by a newer version of the notebook")
        else:
            self.idle.append(worker)

    def abandon(self, worker: Worker, run: Run, grace: float) -> None:
        """A run that timed out or lost its request: interrupt the kernel, then serve again or replace it."""
        if run.finished.done():  # ended after all: the worker was handed on already
            return
        run.abandoned = True
        if not self.closing:
            self._spawn(self._recover(worker, run, grace))

    async def _recover(self, worker: Worker, run: Run, grace: float) -> None:
        try:
            if not worker.died:
                await worker.interrupt()
            if not await worker.settle(run, grace):
                log.warning(
                    "%s: a kernel did not come back within %g s of an interrupt; replacing it", self.name, grace
                )
                worker.retired = True
        except Exception as e:
            if not self.closing:  # at shutdown the run is failed on purpose: nothing to report
                log.warning("%s: could not interrupt a kernel (%s); replacing it", self.name, e)
            worker.retired = True
        self.release(worker)

    def retire(self) -> None:
        """A newer version took over: serve the queued requests, then end every worker."""
        self.retiring = True
        if self._shrinker is not None:
            self._shrinker.cancel()
        if not self.waiters:
            for worker in self.idle:
                self._discard(worker, "replaced by a newer version of the notebook")
            self.idle.clear()

    def stop_serving(self) -> None:
        """Shutdown, first step: the queue and the running requests get 503 now."""
        self.retiring = self.closing = True
        while self.waiters:
            job = self.waiters.popleft()
            if not job.started.done():
                job.started.set_exception(Unavailable("The server is shutting down."))
        for worker in self.workers:
            if worker.run is not None:
                worker.run.fail(Unavailable("The server is shutting down; the request was cut short."))

    async def close(self) -> None:
        """Shutdown: end every worker, busy or not, and wait for every kernel being ended."""
        self.stop_serving()
        running = [*self._tasks, *([self._shrinker] if self._shrinker else [])]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)  # nothing half done from here on
        workers = list(self.workers)
        self.workers.clear()
        self.idle.clear()
        await asyncio.gather(
            *(self.dispose(w, "shut down with the server") for w in workers), *self._disposals, return_exceptions=True
        )

    # growing and shrinking ---------------------------------------------------------------
    def _grow(self) -> None:
        """Start workers for the queue (up to maximum), or back up to minimum."""
        if self.retiring:
            wanted = 1 if self.waiters and not self.workers and not self.starting else 0
        else:
            wanted = max(self.minimum - len(self.workers) - self.starting, len(self.waiters) - self.starting)
            wanted = min(wanted, self.maximum - len(self.workers) - self.starting)
        for _ in range(max(0, wanted)):
            self.starting += 1
            self._spawn(self._start_one())

    async def _start_one(self) -> None:
        try:
            worker = await self.launch()
        except Exception as e:
            self.starting -= 1
            log.error("%s: a kernel failed to start: %s", self.name, e)
            if not self.workers and not self.starting:  # nothing left that could serve the queue
                message = getattr(e, "message", str(e))
                while self.waiters:
                    job = self.waiters.popleft()
                    if not job.started.done():
                        job.started.set_exception(
                            Unavailable(
                                f"No kernel could be started for {self.name}: {message}",
                                "Kernel Failed",
                                headers={"Retry-After": RETRY_AFTER},
                            )
                        )
            return
        self.starting -= 1
        self._adopt(worker)
        self.release(worker)

    def _adopt(self, worker: Worker) -> None:
        self.workers.add(worker)
        worker.on_idle = self.release

    def _discard(self, worker: Worker, reason: str) -> None:
        self.workers.discard(worker)
        if worker in self.idle:
            self.idle.remove(worker)
        task = asyncio.create_task(self.dispose(worker, reason))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _shrink_loop(self) -> None:
        while True:
            await asyncio.sleep(max(self.idle_timeout / 4, 0.05))
            self.shrink()

    def shrink(self) -> None:
        """End idle workers beyond the minimum that have waited longer than idle_timeout."""
        now = time.monotonic()
        extra = len(self.workers) - self.minimum
        for worker in sorted(self.idle, key=lambda w: w.last_used):
            if extra <= 0 or now - worker.last_used < self.idle_timeout:
                break
            self._discard(worker, f"idle for {self.idle_timeout:g} s beyond the pool's minimum")
            extra -= 1

    def _spawn(self, coro: Awaitable[Any]) -> None:
        async def wrapped() -> None:
            await coro

        task = asyncio.create_task(wrapped())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
