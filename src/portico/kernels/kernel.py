"""One kernel: its REST model and state, and the wait for its process to end.

`Kernels` (manager.py) owns the registry and every change of state; whoever holds a kernel
(the REST routes, a notebook API's worker) reads it here and awaits its end with `exit_of`.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.manager import AsyncKernelManager

from ..times import iso
from .relay import KernelRelay
from .seed import Seed


class KernelExited(Exception):
    """The kernel process ended before it answered."""


@dataclass(eq=False)
class Kernel:
    id: str
    name: str
    km: AsyncKernelManager
    relay: KernelRelay | None = None
    execution_state: str = "starting"
    reason: str | None = None
    restarts: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    watcher: asyncio.Task[None] | None = None
    next_restart: asyncio.Task[Kernel] | None = None  # a restart asked for that waits to begin: joined
    restarts_running: set[asyncio.Task[Kernel]] = field(default_factory=set)  # ended with the kernel
    seed: Seed | None = None  # run on start and after every restart
    created: float = field(default_factory=time.time)

    def model(self) -> dict[str, Any]:
        relay = self.relay
        model: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "last_activity": iso(relay.last_activity if relay else time.time()),
            "execution_state": self.execution_state,
            "connections": len(relay.clients) if relay else 0,
        }
        if self.reason:
            model["reason"] = self.reason
        return model

    def set_state(self, state: str) -> None:
        if state and self.execution_state not in ("dead", "restarting"):
            self.execution_state = state


async def exit_of(kernel: Kernel, poll_interval: float) -> None:
    """Returns when the kernel's process has exited: at once, through a pidfd, for a local
    process; after poll_interval for a kernel with none (the caller then asks its provisioner
    whether it is alive, and waits again if it is)."""
    process: Any = getattr(kernel.km.provisioner, "process", None)
    pid = getattr(process, "pid", None)
    if pid is None or not hasattr(os, "pidfd_open"):
        await asyncio.sleep(poll_interval)
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:  # already reaped: it exited
        return
    try:
        if process.returncode is not None:  # reaped before the pidfd opened: the pid may be reused
            return
        exited, loop = asyncio.Event(), asyncio.get_running_loop()
        loop.add_reader(fd, exited.set)
        try:
            await exited.wait()
        finally:
            loop.remove_reader(fd)
    finally:
        os.close(fd)


async def death_of(kernel: Kernel, poll_interval: float) -> None:
    """Returns once the kernel's process is gone for good (for a kernel nobody restarts)."""
    while True:
        await exit_of(kernel, poll_interval)
        if not await kernel.km.is_alive():
            return
