"""Warm kernels per kernelspec: started ahead in root_dir with the base environment,
seeded, and handed out by POST /api/kernels (and one-shot runs) when the request asks for
nothing else.

The pool keeps `size` kernels ready and grows with demand: a take that finds it empty doubles
its target (up to `maximum`), so the next burst of takes finds the kernels this one wanted.
Once it is full and no kernel has been taken for `idle_timeout` seconds, the target halves,
back toward `size`, and the warm kernels beyond it are shut down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("portico")

FILLING = 2  # warm kernels started at once per kernelspec


class Pool:
    def __init__(
        self,
        launch: Callable[[str], Awaitable[Kernel]],
        dispose: Callable[[Kernel], Awaitable[None]],
        names: list[str],
        size: int,
        maximum: int,
        idle_timeout: float,
    ) -> None:
        self.launch = launch
        self.dispose = dispose
        self.size = size
        self.maximum = max(size, maximum) if size else 0
        self.idle_timeout = idle_timeout
        self.ready: dict[str, deque[Kernel]] = {name: deque() for name in names} if size else {}
        self.target: dict[str, int] = {name: size for name in self.ready}
        self._taken: dict[str, float] = {name: time.monotonic() for name in self.ready}  # the last take
        self._full: dict[str, float] = dict(self._taken)  # when it last reached its target
        self._filling: dict[str, int] = {name: 0 for name in self.ready}
        self._tasks: set[asyncio.Task[None]] = set()  # fills: cancelled at shutdown
        self._disposals: set[asyncio.Task[None]] = set()  # awaited at shutdown: no kernel left half-ended
        self._shrinker: asyncio.Task[None] | None = None

    def start(self) -> None:
        for name in self.ready:
            self._refill(name)
        if self.maximum > self.size:
            self._shrinker = asyncio.create_task(self._shrink_loop())

    def take(self, name: str) -> Kernel | None:
        kernels = self.ready.get(name)
        if kernels is None:
            return None
        self._taken[name] = time.monotonic()
        kernel = kernels.popleft() if kernels else None
        if kernel is None and self.target[name] < self.maximum:  # demand beyond what is kept: grow
            self.target[name] = min(self.maximum, self.target[name] * 2)
            log.info("warm pool: %s grows to %d kernels", name, self.target[name])
        self._refill(name)
        return kernel

    def counts(self) -> dict[str, int]:
        return {name: len(kernels) for name, kernels in self.ready.items()}

    def _refill(self, name: str) -> None:
        """Starts what the target lacks, FILLING at a time: a kernel's start is CPU-bound for a few
        hundred ms, and eight at once would slow the runs on the kernels just taken."""
        wanted = self.target[name] - len(self.ready[name]) - self._filling[name]
        for _ in range(max(0, min(wanted, FILLING - self._filling[name]))):
            self._filling[name] += 1
            self._spawn(self._tasks, self._fill_one(name))

    @staticmethod
    def _spawn(tasks: set[asyncio.Task[None]], work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _fill_one(self, name: str) -> None:
        try:
            kernel = await self.launch(name)
        except Exception as e:  # logged; the next take() tries again
            log.warning("warm pool: a %s kernel failed to start: %s", name, e)
            return
        finally:
            self._filling[name] -= 1
        self.ready[name].append(kernel)
        self._refill(name)  # the rest of the target, FILLING at a time
        if len(self.ready[name]) >= self.target[name]:
            self._full[name] = time.monotonic()  # idle is counted from here too

    async def _shrink_loop(self) -> None:
        while True:
            await asyncio.sleep(min(self.idle_timeout / 4, 30.0))
            self.shrink_idle()

    def shrink_idle(self) -> None:
        now = time.monotonic()
        for name, kernels in self.ready.items():
            quiet = now - max(self._taken[name], self._full[name])
            if self.target[name] <= self.size or self._filling[name] or quiet < self.idle_timeout:
                continue
            self.target[name] = max(self.size, self.target[name] // 2)
            self._taken[name] = now  # the next halving after another idle_timeout
            log.info("warm pool: %s idle, shrinks to %d kernels", name, self.target[name])
            while len(kernels) > self.target[name]:
                self._spawn(self._disposals, self.dispose(kernels.pop()))

    async def drain(self) -> list[Kernel]:
        """Stop filling and give back every warm kernel, for shutdown."""
        if self._shrinker is not None:
            self._shrinker.cancel()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._disposals, return_exceptions=True)
        kernels = [k for q in self.ready.values() for k in q]
        for q in self.ready.values():
            q.clear()
        return kernels
