"""jupyter_client's local provisioner for a kernel it did not start: one that a previous Portico
left running (keep_kernels) and this one re-attaches to.  There is no Popen to ask, so the
kernel is known by its pid and its start time (so a reused pid is never taken for it), and
signalled by its process group, as the local provisioner does."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

POLL = 0.05  # seconds between looks at an adopted kernel that was told to end


def started_at(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (procfs), or None when it is gone
    (a zombie counts as gone)."""
    try:
        stat = open(f"/proc/{pid}/stat").read()  # noqa: SIM115
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[19])


class AdoptedLocalProvisioner(LocalProvisioner):
    started: int | None = None

    @property
    def has_process(self) -> bool:
        return self.process is not None or self._adopted_alive()

    def _adopted_alive(self) -> bool:
        return self.pid is not None and self.started is not None and started_at(self.pid) == self.started

    async def get_provisioner_info(self) -> dict[str, Any]:
        info: dict[str, Any] = await super().get_provisioner_info()
        info["started"] = started_at(self.pid) if self.pid else None
        return info

    async def load_provisioner_info(self, provisioner_info: dict[str, Any]) -> None:
        await super().load_provisioner_info(provisioner_info)
        self.started = provisioner_info.get("started")

    async def poll(self) -> int | None:
        if self.process is not None:
            return await super().poll()
        return None if self._adopted_alive() else 0

    async def wait(self) -> int | None:
        if self.process is not None:
            return await super().wait()
        while self._adopted_alive():
            await asyncio.sleep(POLL)
        return 0

    async def send_signal(self, signum: int) -> None:
        if self.process is not None:
            return await super().send_signal(signum)
        if not self._adopted_alive():
            return None
        try:
            if self.pgid and self.pgid != os.getpgrp():
                os.killpg(self.pgid, signum)
            elif self.pid is not None:
                os.kill(self.pid, signum)
        except ProcessLookupError:
            pass
        return None

    async def kill(self, restart: bool = False) -> None:
        if self.process is not None:
            return await super().kill(restart)
        await self.send_signal(signal.SIGKILL)
        return None

    async def terminate(self, restart: bool = False) -> None:
        if self.process is not None:
            return await super().terminate(restart)
        await self.send_signal(signal.SIGTERM)
        return None
