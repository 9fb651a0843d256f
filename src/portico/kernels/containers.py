"""Portico's Docker and Docker Swarm provisioners: gateway_provisioners' with the defects that
matter to a gateway fixed, under Portico's entry point names (remote.FIXED maps the stock ones);
ContainerFixes also serves the Kubernetes one (pods.py).

- Every Docker (or Kubernetes) API call of the stock provisioners (container status at every poll and every
  tick of a launch, forced removal at shutdown) blocks the event loop; here each runs in a thread.
- The launch waits for the container and its connection info directly, not in 0.5 s ticks, and
  fails naming the image and the container's state.
- The launcher script reads DOCKER_NETWORK, while the provisioner sets GP_DOCKER_NETWORK; a
  kernel on any network but `bridge` then starts with no network at all.  Here both are set.
- The engine's address (DOCKER_HOST and its TLS settings) reaches the launcher, which runs with
  the kernel's environment: Portico's own environment never does (its token, PORTICO_*), since
  the launcher copies whatever environment it has into the container.
- The response listener and the kernel's listener: as for every remote kernel (provisioners.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from gateway_provisioners import docker_swarm as stock
from gateway_provisioners.remote_provisioner import RemoteProvisionerBase

from .provisioners import ListenerFixes

ENGINE_ENV = ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT")
TICK = 0.05  # seconds between looks at a starting container


class ContainerFixes(ListenerFixes):
    """For every provisioner of container kernels (Docker, Swarm, Kubernetes)."""

    kernel_id: str
    launch_timeout: float
    image_name: str | None
    container_name: str | None
    assigned_host: str

    async def confirm_remote_startup(self) -> None:
        self.start_time = RemoteProvisionerBase.get_current_time()
        response = self.response_manager._response_registry[self.kernel_id]  # type: ignore[attr-defined]
        deadline = time.monotonic() + self.launch_timeout
        tick = 0
        status = ""
        while True:
            tick += 1
            status = await asyncio.to_thread(self.get_container_status, str(tick))  # type: ignore[attr-defined]
            if status in self.get_error_states():  # type: ignore[attr-defined]
                raise RuntimeError(
                    f"The kernel's container {self.container_name} (image {self.image_name}) is {status}"
                )
            if not status:
                self.detect_launch_failure()  # type: ignore[attr-defined]
            if self.assigned_host and response.is_set():
                break
            if time.monotonic() > deadline:
                what = f"container {self.container_name} is {status}" if status else "no container started"
                raise TimeoutError(
                    f"The kernel (image {self.image_name}) sent no connection info within "
                    f"{self.launch_timeout:g} s (launch_timeout): {what}"
                )
            try:
                await asyncio.wait_for(response.wait(), TICK)
            except TimeoutError:
                pass
        connect_info = self.response_manager._response_registry.pop(self.kernel_id).response  # type: ignore[attr-defined]
        self._setup_connection_info(connect_info)  # type: ignore[attr-defined]
        self.pid = self.pgid = 0  # containers are signalled through their listener, ended by the engine

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        try:
            return await super().launch_kernel(cmd, **kwargs)  # type: ignore[misc]
        except BaseException:  # whatever the launcher started goes (found by its kernel_id label)
            self.response_manager._response_registry.pop(self.kernel_id, None)  # type: ignore[attr-defined]
            await asyncio.shield(asyncio.to_thread(self.terminate_container_resources, False))  # type: ignore[attr-defined]
            raise

    async def poll(self) -> int | None:
        status = await asyncio.to_thread(self.get_container_status, None)  # type: ignore[attr-defined]
        return None if status in self.get_initial_states() else 0  # type: ignore[attr-defined]

    async def kill(self, restart: bool = False) -> None:
        if self.container_name:
            await asyncio.to_thread(self.terminate_container_resources, restart)  # type: ignore[attr-defined]

    async def shutdown_listener(self, restart: bool) -> None:
        await RemoteProvisionerBase.shutdown_listener(self, restart)
        await self.kill(restart)


class EngineEnv:
    """The launcher of a Docker kernel runs with the kernel's environment: give it the engine."""

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        kwargs = await super().pre_launch(**kwargs)  # type: ignore[misc]
        env = kwargs["env"]
        for name in ENGINE_ENV:
            if name in os.environ:
                env.setdefault(name, os.environ[name])
        env["DOCKER_NETWORK"] = stock.docker_network  # what the launcher reads
        return kwargs


class DockerProvisioner(EngineEnv, ContainerFixes, stock.DockerProvisioner):
    """gateway_provisioners' docker-provisioner, fixed (see the module's docstring)."""


class DockerSwarmProvisioner(EngineEnv, ContainerFixes, stock.DockerSwarmProvisioner):
    """gateway_provisioners' docker-swarm-provisioner, fixed (see the module's docstring)."""
