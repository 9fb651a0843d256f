"""Warm kernels per kernelspec: started ahead in root_dir with the base environment,
seeded, and handed out by POST /api/kernels when the request asks for nothing else."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("portico")


class Pool:
    def __init__(self, launch: Callable[[str], Awaitable[Kernel]], names: list[str], size: int) -> None:
        self.launch = launch
        self.size = size
        self.ready: dict[str, deque[Kernel]] = {name: deque() for name in names} if size else {}
        self._filling: dict[str, int] = {name: 0 for name in self.ready}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        for name in self.ready:
            self._refill(name)

    def take(self, name: str) -> Kernel | None:
        kernels = self.ready.get(name)
        if not kernels:
            return None
        kernel = kernels.popleft()
        self._refill(name)
        return kernel

    def counts(self) -> dict[str, int]:
        return {name: len(kernels) for name, kernels in self.ready.items()}

    def _refill(self, name: str) -> None:
        for _ in range(self.size - len(self.ready[name]) - self._filling[name]):
            self._filling[name] += 1
            task = asyncio.create_task(self._fill_one(name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _fill_one(self, name: str) -> None:
        try:
            kernel = await self.launch(name)
        except Exception as e:  # logged; the next take() tries again
            log.warning("warm pool: a %s kernel failed to start: %s", name, e)
        else:
            self.ready[name].append(kernel)
        finally:
            self._filling[name] -= 1

    async def drain(self) -> list[Kernel]:
        """Stop filling and give back every warm kernel, for shutdown."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        kernels = [k for q in self.ready.values() for k in q]
        for q in self.ready.values():
            q.clear()
        return kernels
