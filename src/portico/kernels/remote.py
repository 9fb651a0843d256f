"""What the kernel manager knows of kernels started through a provisioner other than
jupyter_client's local one, without importing a provisioner package before it is needed."""

from __future__ import annotations

import asyncio
from typing import Any

from jupyter_client.provisioning.factory import KernelProvisionerFactory

# Stock provisioners whose kernelspecs start through Portico's fixed ones (provisioners.py).
FIXED = {
    "distributed-provisioner": "portico-distributed-provisioner",
    "docker-provisioner": "portico-docker-provisioner",
    "docker-swarm-provisioner": "portico-docker-swarm-provisioner",
    "kubernetes-provisioner": "portico-kubernetes-provisioner",
}
OWN = frozenset(FIXED.values())

_prepared: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Future[None]] = {}  # per loop: tests run several


def provisioner_of(spec: Any) -> str | None:
    """The provisioner a kernelspec names, or None for jupyter_client's local one."""
    named = (getattr(spec, "metadata", None) or {}).get("kernel_provisioner") or {}
    name = named.get("provisioner_name") if isinstance(named, dict) else None
    return None if name in (None, "local-provisioner") else str(name)


def fixed(spec: Any) -> Any:
    """spec, naming Portico's provisioner where it names a stock one Portico fixes."""
    name = provisioner_of(spec)
    if name in FIXED:
        spec.metadata["kernel_provisioner"]["provisioner_name"] = FIXED[name]
    return spec


async def prepare(name: str) -> None:
    """Before the first kernel of provisioner `name` starts: its package imported in a thread
    (gateway_provisioners brings paramiko and pycryptodome: a third of a second on the event
    loop otherwise), and Portico's own provisioners set up off the loop."""
    loop = asyncio.get_running_loop()
    task = _prepared.get((loop, name))
    if task is None or (task.done() and task.exception() is not None):
        task = _prepared[(loop, name)] = asyncio.ensure_future(_prepare(name))
    await asyncio.shield(task)


async def _prepare(name: str) -> None:
    entry = KernelProvisionerFactory.instance().provisioners.get(name)
    if entry is None:
        return  # jupyter_client says so when the kernel starts
    await asyncio.to_thread(entry.load)
    if name in OWN:
        from . import provisioners

        await provisioners.prepare()
