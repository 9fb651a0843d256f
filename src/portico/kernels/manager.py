"""Kernel lifecycle: start, stop, restart, interrupt; the registry, death watch and culling."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning.factory import KernelProvisionerFactory

from ..environment import inherited, without_secrets
from ..errors import Close, Conflict, LimitReached, NotFound, Unavailable, described
from ..settings import Settings
from . import remote
from .adopted import AdoptedLocalProvisioner, started_at
from .kernel import Kernel, KernelExited, exit_of
from .pool import Pool
from .registry import Entry, Registry
from .relay import KernelRelay, RelayOptions, Stats
from .requests import StartRequest
from .seed import Seed
from .specs import Specs

log = logging.getLogger("portico")

START_ATTEMPTS = 3  # a kernel process that dies while starting is started again, this many times in all
STARTUP_POLL = 0.1  # seconds between checks that a starting kernel's process is still there
SLOW_RESTART = 30.0  # seconds past which a restart is logged as a warning, with where the time went


BOOT_SCRIPT = str(Path(__file__).with_name("ipykernel_boot.py"))
IPYKERNEL_MODULES = ("ipykernel_launcher", "ipykernel")
SUBSCRIBER_HWM = 1000  # iopub messages Portico's subscription queues from a kernel that holds the rest


def with_iopub_hwm(cmd: list[str], hwm: int) -> list[str]:
    """An ipykernel command line (`python -m ipykernel_launcher ...`) made to start through
    ipykernel_boot.py, which gives the kernel's iopub socket the high-water mark hwm; any
    other command as it is."""
    if len(cmd) >= 3 and cmd[1] == "-m" and cmd[2] in IPYKERNEL_MODULES:
        return [cmd[0], BOOT_SCRIPT, str(hwm), *cmd[3:]]
    return cmd


class KernelManager(AsyncKernelManager):
    """jupyter_client's manager, starting ipykernel kernels whose iopub never drops below iopub_hwm,
    and kernelspecs naming a provisioner Portico fixes through Portico's (remote.FIXED)."""

    iopub_hwm = 0
    holds_iopub = False  # the kernel started through ipykernel_boot.py: it keeps what Portico has not read

    @property
    def kernel_spec(self) -> Any:
        spec = super().kernel_spec
        return remote.fixed(spec) if spec is not None else None

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        plain = super().format_kernel_cmd(extra_arguments)
        cmd = with_iopub_hwm(plain, self.iopub_hwm)
        self.holds_iopub = cmd is not plain
        return cmd


class _Spec:
    """A kernelspec's metadata, where remote.provisioner_of looks."""

    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata


class Kernels:
    """Every kernel Portico runs, by id."""

    def __init__(self, settings: Settings, specs: Specs) -> None:
        self.settings = settings
        self.specs = specs
        self.kernels: dict[str, Kernel] = {}
        self.stats: Stats = Counter()
        self._context: zmq.asyncio.Context | None = None
        self._starting = 0
        self._reserved: dict[str, asyncio.Event] = {}  # ids of kernels being started -> set once they are
        self._doomed: set[str] = set()  # of those, the ones a DELETE came for: ended as soon as they start
        self.accepting = True  # False once the server shuts down: new kernels get 503
        self._alive: set[Kernel] = set()  # every kernel started and not yet disposed, whoever owns it
        self._ipc_dir: str | None = None
        self.registry: Registry | None = None  # with a state_dir: what the next server re-attaches to or ends
        self._culler: asyncio.Task[None] | None = None
        s = settings
        self.relay_options = RelayOptions(
            s.client_buffer_limit,
            s.journal_max_bytes,
            s.journal_max_age,
            (s.iopub_msg_rate_limit, s.iopub_data_rate_limit, s.rate_limit_window) if s.limit_rate else None,
            s.kernel_restart_output_wait,
        )
        self.seed = Seed.load(s.seed, s.default_kernel_name) if s.seed else None
        self.pool = Pool(
            self._launch_warm,
            lambda kernel: self._dispose(kernel, "warm kernel shut down: the pool shrank"),
            s.pool_kernels or [s.default_kernel_name],
            s.pool_size,
            s.pool_max,
            s.pool_idle_timeout,
        )

    @property
    def context(self) -> zmq.asyncio.Context:
        if self._context is None:
            self._context = zmq.asyncio.Context()
            # three sockets per WebSocket client: ZeroMQ's default of 1,023 would cap clients at ~340
            self._context.set(zmq.MAX_SOCKETS, self._context.get(zmq.SOCKET_LIMIT))
        return self._context

    # lookup ------------------------------------------------------------------------------
    def get(self, kernel_id: str) -> Kernel:
        kernel = self.kernels.get(kernel_id)
        if kernel is None:
            raise NotFound(f"No such kernel: {kernel_id}.", "No Such Kernel")
        return kernel

    def connections(self) -> int:
        return sum(len(k.relay.clients) for k in self.kernels.values() if k.relay)

    def last_activity(self) -> float | None:
        times = [k.relay.last_activity for k in self.kernels.values() if k.relay]
        return max(times) if times else None

    # lifecycle ---------------------------------------------------------------------------
    async def start(self, request: StartRequest) -> Kernel:
        """A kernel for a request that passed requests.start_request: an existing one with its id,
        a warm one from the pool when nothing asks for a different one, else a new one."""
        name, cwd, extra_env, kernel_id = request.name, request.cwd, request.env, request.kernel_id
        if not self.accepting:
            raise Unavailable("The server is shutting down; no new kernels.")
        if kernel_id is not None:
            if kernel_id in self.kernels:
                return self.kernels[kernel_id]
            if kernel_id in self._reserved:
                raise Conflict(f"Kernel {kernel_id} is being started by another request; ask again in a moment.")
        self.specs.get(name)
        limit = self.settings.max_kernels
        if limit and len(self.kernels) + self._starting >= limit:
            raise LimitReached(f"Maximum number of kernels ({limit}) reached; shut one down or raise max_kernels.")
        # A warm kernel has an id of its own, which its provisioner gave its host: not for a chosen id.
        plain = not extra_env and kernel_id is None and cwd == self.settings.root_dir
        warm = self.pool.take(name) if plain else None
        if warm is not None:
            assert warm.relay is not None
            warm.relay.reset_journal()
            kernel, origin = warm, "from the warm pool"
        else:
            new_id = kernel_id or str(uuid.uuid4())
            self._starting += 1
            started = self._reserved[new_id] = asyncio.Event()
            try:
                kernel = await self._launch(new_id, name, cwd, {**self.base_env(), **extra_env}, self.seed_for(name))
                if new_id in self._doomed:
                    await self._dispose(kernel, "shut down while it started")
                    raise NotFound(f"Kernel {new_id} was shut down while it started.")
            finally:
                self._starting -= 1
                del self._reserved[new_id]
                self._doomed.discard(new_id)
                started.set()
            origin = "cold"
        self.kernels[kernel.id] = kernel
        if self.registry is not None:
            self.registry.update(kernel.id, listed=1)
        kernel.watcher = asyncio.create_task(self._watch(kernel))
        log.info("kernel %s started (%s, %s) in %s", kernel.id, name, origin, cwd)
        return kernel

    def base_env(self) -> dict[str, str]:
        """PATH and the inherited allow-list; never PORTICO_* or anything holding the token."""
        return without_secrets(inherited(self.settings.kernel_env_inherit), self.settings.token)

    async def _launch_warm(self, name: str) -> Kernel:
        s = self.settings
        kernel = await self._launch(str(uuid.uuid4()), name, s.root_dir, self.base_env(), self.seed_for(name))
        assert kernel.relay is not None
        try:  # a kernel's first execution costs it 5-10 ms more than the next: paid here, not by its taker
            await kernel.relay.execute("pass", s.kernel_start_timeout)
        except BaseException:
            await self._dispose(kernel, "warm kernel failed its first execution")
            raise
        return kernel

    async def launch_private(self, name: str, cwd: str, seed: Seed | None, options: RelayOptions) -> Kernel:
        """A ready, seeded kernel outside the registry (not listed, not culled, no REST access).

        Its owner (a notebook HTTP API's pool) ends it with dispose() before end().
        KERNEL_GATEWAY=1 is set, as Kernel Gateway sets it: notebooks check it to skip demo
        cells when served.  Not for the REST API's kernels: a notebook edited through them is
        not being served, and would lose those cells.
        """
        env = {**self.base_env(), "KERNEL_GATEWAY": "1"}
        return await self._launch(str(uuid.uuid4()), name, cwd, env, seed, options)

    def seed_for(self, name: str) -> Seed | None:
        return self.seed if self.seed is not None and self.seed.kernel_name == name else None

    @property
    def ipc_dir(self) -> str:
        """A private (0700) directory for the kernels' ipc sockets, removed at shutdown."""
        if self._ipc_dir is None:
            if self.settings.keep_kernels:  # kept kernels' sockets outlive this server
                self._ipc_dir = os.path.join(self.settings.state_dir, "ipc")
                os.makedirs(self._ipc_dir, mode=0o700, exist_ok=True)
            else:
                self._ipc_dir = tempfile.mkdtemp(prefix="portico-")
        return self._ipc_dir

    async def _launch(
        self,
        kernel_id: str,
        name: str,
        cwd: str,
        env: dict[str, str],
        seed: Seed | None,
        options: RelayOptions | None = None,
    ) -> Kernel:
        """A started, ready (and seeded) kernel; a process that dies while starting is tried again."""
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return await self._launch_once(kernel_id, name, cwd, env, seed, options or self.relay_options)
            except KernelExited as e:
                log.warning(
                    "kernel %s (%s) exited while starting (attempt %d of %d): %s",
                    kernel_id,
                    name,
                    attempt,
                    START_ATTEMPTS,
                    e,
                )
                if attempt == START_ATTEMPTS:
                    raise Unavailable(
                        f"Kernel {name!r} exited while starting ({e}), {attempt} times; see the server log.",
                        "Kernel Failed",
                    ) from None
        raise AssertionError("unreachable")

    async def _launch_once(
        self, kernel_id: str, name: str, cwd: str, env: dict[str, str], seed: Seed | None, relay_options: RelayOptions
    ) -> Kernel:
        provisioner = remote.provisioner_of(remote.fixed(self.specs.get(name)))
        options: dict[str, Any] = {}
        if provisioner is not None:  # its provisioner says where the kernel listens
            await remote.prepare(provisioner)
            options["transport_encryption"] = self.settings.remote_transport_encryption
        else:
            options["transport"] = self.settings.kernel_transport
            if self.settings.kernel_transport == "ipc":
                options["connection_file"] = os.path.join(self.ipc_dir, f"k-{uuid.uuid4().hex[:12]}.json")
        km = KernelManager(
            kernel_name=name,
            kernel_id=kernel_id,  # what the provisioner passes to the kernel's host (KERNEL_ID)
            kernel_spec_manager=self.specs.manager,
            context=self.context,
            **options,
        )
        km.iopub_hwm = self.settings.kernel_iopub_hwm
        km.shutdown_wait_time = self.settings.kernel_shutdown_wait
        kernel = Kernel(kernel_id, name, km, seed=seed)
        self._alive.add(kernel)
        try:
            # A kept kernel must outlive this server: no parent poller, a session of its own.
            await km.start_kernel(cwd=cwd, env=env, independent=self.settings.keep_kernels)
        except BaseException as e:  # a failed or cancelled start leaves no process behind
            self._alive.discard(kernel)
            if km.has_kernel:
                await asyncio.shield(km.shutdown_kernel(now=True))
            if not isinstance(e, Exception):
                raise
            log.warning("kernel %s (%s) failed to start: %s", kernel_id, name, described(e))
            raise Unavailable(f"Kernel {name!r} failed to start: {described(e)}", "Kernel Failed") from None
        kernel.relay = KernelRelay(
            self.context,
            dict(km.get_connection_info()),
            self.stats,
            relay_options,
            kernel.set_state,
            iopub_hwm=SUBSCRIBER_HWM if km.holds_iopub else 0,
        )
        try:
            await self._ready(kernel)
        except KernelExited:
            await self._dispose(kernel, "exited while starting")
            raise
        except TimeoutError:
            await self._dispose(kernel, "did not answer in time")
            raise Unavailable(
                f"Kernel {name!r} did not answer within {self.settings.kernel_start_timeout} s "
                "(option kernel_start_timeout).",
                "Kernel Timeout",
            ) from None
        except Unavailable:
            await self._dispose(kernel, "failed to seed")
            raise
        except BaseException:  # cancelled (shutdown while a warm kernel starts): leave no process behind
            await asyncio.shield(self._dispose(kernel, "start cancelled"))
            raise
        kernel.execution_state = "idle"
        await self._record(kernel, listed=False)
        return kernel

    async def _record(self, kernel: Kernel, listed: bool) -> None:
        """The kernel in the registry, with what finds it again after a restart of the server."""
        km = kernel.km
        if self.registry is None or km.provisioner is None:
            return
        info = await km.provisioner.get_provisioner_info()
        if remote.provisioner_of(km.kernel_spec) is None:
            info["started"] = started_at(info["pid"]) if info.get("pid") else None
        info["portico"] = {"launch_args": km._launch_args, "holds_iopub": getattr(km, "holds_iopub", False)}
        connection = dict(km.get_connection_info())
        activity = kernel.relay.last_activity if kernel.relay else time.time()
        self.registry.put(Entry(kernel.id, kernel.name, listed, connection, info, kernel.created, activity))

    async def _ready(self, kernel: Kernel) -> None:
        """Until the kernel answers, then run the seed notebook in it when it applies."""
        assert kernel.relay is not None
        timeout = self.settings.kernel_start_timeout
        await self._unless_it_exits(kernel, kernel.relay.wait_ready(timeout))
        seed = kernel.seed
        if seed is None:
            return
        for index, code in enumerate(seed.cells):
            number = seed.numbers[index] if seed.numbers else index + 1
            reply = await kernel.relay.execute(code, timeout)
            if reply.get("status") != "ok":
                raise Unavailable(
                    f"Seed notebook {seed.path}, code cell {number}: {reply.get('ename')}: {reply.get('evalue')}",
                    "Seed Failed",
                )

    async def _unless_it_exits(self, kernel: Kernel, waiting: Coroutine[Any, Any, None]) -> None:
        """Await waiting, but raise KernelExited as soon as the kernel process is gone."""
        task = asyncio.ensure_future(waiting)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=STARTUP_POLL)
                if done:
                    return task.result()
                if not await kernel.km.is_alive():
                    code = await kernel.km.provisioner.poll() if kernel.km.provisioner else None
                    raise KernelExited(f"exit code {code}")
        finally:
            task.cancel()

    async def _watch(self, kernel: Kernel) -> None:
        """Notice a kernel process that died; restart it or mark it dead."""
        while kernel.execution_state != "dead":
            await exit_of(kernel, self.settings.kernel_poll_interval)
            async with kernel.lock:
                if kernel.execution_state == "dead":  # a restart that failed said so already
                    return
                if kernel.id not in self.kernels or await kernel.km.is_alive():
                    continue
                await self._on_death(kernel)

    async def _on_death(self, kernel: Kernel) -> None:
        """Restart a kernel that died, holding what its clients send until the new one is ready."""
        relay = kernel.relay
        assert relay is not None
        code = await kernel.km.provisioner.poll() if kernel.km.provisioner else None
        relay.hold()
        if self.settings.autorestart and kernel.restarts < self.settings.restart_limit:
            kernel.restarts += 1
            log.warning(
                "kernel %s died (exit code %s); restarting (%d of %d)",
                kernel.id,
                code,
                kernel.restarts,
                self.settings.restart_limit,
            )
            kernel.execution_state = "restarting"
            relay.broadcast_status("restarting")
            try:
                await kernel.km.restart_kernel(now=True)
                await self._reattach(kernel)
                await self._record(kernel, listed=True)
                kernel.execution_state = "idle"
                relay.release("died")
                return
            except Exception as e:
                log.error("kernel %s failed to restart: %s", kernel.id, described(e))
        kernel.execution_state = "dead"
        kernel.reason = f"kernel process exited with code {code}"
        if self.settings.autorestart:
            kernel.reason += f" after {kernel.restarts} automatic restarts"
        log.error("kernel %s died: %s", kernel.id, kernel.reason)
        relay.release("died", failure=f"the kernel is dead ({kernel.reason}).")
        relay.broadcast_status("dead")

    async def _reattach(self, kernel: Kernel, done: Callable[[str], None] = lambda phase: None) -> None:
        """After km.restart_kernel: the relay on the new connection info, then until it is ready."""
        assert kernel.relay is not None
        await kernel.relay.reattach(dict(kernel.km.get_connection_info()))
        done("the old subscription's last output")
        try:
            await self._ready(kernel)
        except TimeoutError:
            raise TimeoutError(
                f"the new kernel did not answer within {self.settings.kernel_start_timeout:g} s "
                "(option kernel_start_timeout)"
            ) from None

    async def restart(self, kernel_id: str) -> Kernel:
        """Restart a kernel.  Requests that come while a restart waits for another to end join the
        waiting one: each is answered by a restart that began after it was asked, and clients'
        messages are not held through a queue of restarts one after another."""
        kernel = self.get(kernel_id)
        if kernel.next_restart is None or kernel.next_restart.done():
            task = kernel.next_restart = asyncio.create_task(self._restart(kernel))
            kernel.restarts_running.add(task)
            task.add_done_callback(kernel.restarts_running.discard)
        else:
            log.info("kernel %s: restart asked for while one waits to begin; it joins that one", kernel_id)
        task = kernel.next_restart
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.cancelled() and not (current and current.cancelling()):  # the kernel was ended meanwhile
                raise NotFound(f"Kernel {kernel_id} was shut down while it restarted.") from None
            raise

    async def _restart(self, kernel: Kernel) -> Kernel:
        kernel_id = kernel.id
        phases: dict[str, float] = {}
        mark = time.monotonic()

        def done(phase: str) -> None:
            nonlocal mark
            now = time.monotonic()
            phases[phase], mark = now - mark, now

        async with kernel.lock:
            kernel.next_restart = None  # begun: a restart asked for from now on is a new one
            done("waiting for another restart")
            relay = kernel.relay
            assert relay is not None
            kernel.execution_state = "restarting"
            relay.hold()  # no status: restarting pushed: @jupyterlab/services takes it for an automatic restart
            try:
                await relay.barrier()  # what the old kernel published reaches its clients before it goes
                done("the old kernel's output")
                await kernel.km.restart_kernel(now=False)
                done("shutdown and start")
                await self._reattach(kernel, done)
                done("until it answered")
            except Exception as e:
                why = described(e)
                kernel.execution_state, kernel.reason = "dead", f"restart failed: {why}"
                relay.release("was restarted", failure=f"the kernel failed to restart ({why}).")
                relay.broadcast_status("dead")
                raise Unavailable(f"Kernel {kernel_id} failed to restart: {why}", "Kernel Failed") from None
            kernel.execution_state, kernel.reason, kernel.restarts = "idle", None, 0
            await self._record(kernel, listed=True)
            relay.release("was restarted")
            if kernel.watcher is None or kernel.watcher.done():
                kernel.watcher = asyncio.create_task(self._watch(kernel))
        took = sum(phases.values())
        spent = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in phases.items())
        # What clients sent meanwhile waited that long: a slow restart is worth a warning.
        (log.warning if took > SLOW_RESTART else log.info)("kernel %s restarted in %.1f s (%s)", kernel_id, took, spent)
        return kernel

    async def interrupt(self, kernel_id: str) -> None:
        kernel = self.get(kernel_id)
        if kernel.execution_state == "restarting":
            # Nothing runs: what clients send is held for the new kernel.  A signal now would end
            # the old kernel before its last output is out, or the new one as it starts.
            log.info("kernel %s: interrupt while it restarts, nothing to interrupt", kernel_id)
            return
        await kernel.km.interrupt_kernel()
        log.info("kernel %s interrupted", kernel_id)

    async def shutdown(self, kernel_id: str, reason: str = "shut down") -> None:
        starting = self._reserved.get(kernel_id) if kernel_id not in self.kernels else None
        if starting is not None:  # its POST is still waiting: the kernel is ended once it has started
            log.info("kernel %s %s while it starts; it ends once started", kernel_id, reason)
            self._doomed.add(kernel_id)
            await starting.wait()
            return
        kernel = self.get(kernel_id)
        del self.kernels[kernel_id]
        log.info("kernel %s %s", kernel_id, reason)
        await self._dispose(kernel, reason)

    async def dispose(self, kernel: Kernel, reason: str) -> None:
        """End a kernel that is not in the registry (one from _launch)."""
        await self._dispose(kernel, reason)

    async def _dispose(self, kernel: Kernel, reason: str) -> None:
        self._alive.discard(kernel)
        if kernel.watcher is not None:
            kernel.watcher.cancel()
        restarts = list(kernel.restarts_running)  # a restart must not bring back a kernel being ended
        for task in restarts:
            task.cancel()
        await asyncio.gather(*restarts, return_exceptions=True)
        if kernel.relay is not None:
            await kernel.relay.close(f"kernel {reason}")
        try:
            await kernel.km.shutdown_kernel(now=False)
        except Exception as e:  # a kernel that is already gone is fine
            log.warning("kernel %s: error during shutdown: %s", kernel.id, e)
        if self.registry is not None:
            self.registry.remove(kernel.id)

    # lifecycle (portico.lifecycle.Component) ------------------------------------------------
    name = "kernels"

    async def start_up(self) -> None:
        await self._prepare_provisioners()
        if self.settings.state_dir:
            self.registry = Registry(self.settings.state_dir)
            await self.adopt()
        self.pool.start()
        if self.settings.cull_idle_timeout > 0:
            self._culler = asyncio.create_task(self._cull_loop())

    async def _prepare_provisioners(self) -> None:
        """The provisioners the installed kernelspecs name, made ready before any request comes:
        importing them (paramiko, cryptography) and making the response listener's key take the
        GIL for half a second, which a first remote start would otherwise spend beside the loop."""
        names = set()
        for found in self.specs.manager.get_all_specs().values():
            spec = found.get("spec") or {}
            named = remote.provisioner_of(remote.fixed(_Spec(spec.get("metadata") or {})))
            if named is not None:
                names.add(named)
        for name in sorted(names):
            try:
                await remote.prepare(name)
            except Exception as e:  # a kernelspec of it fails to start, saying why; the server serves
                log.warning("provisioner %s cannot be loaded: %s", name, described(e))

    def stop_accepting(self) -> None:
        self.accepting = False

    async def disconnect(self, reason: str) -> None:
        relays = [k.relay for k in self.kernels.values() if k.relay is not None]
        await asyncio.gather(*(r.disconnect_all(Close.GOING_AWAY, reason) for r in relays), return_exceptions=True)

    async def end(self) -> None:
        if self._culler is not None:
            self._culler.cancel()
        warm = await self.pool.drain()
        if self.settings.keep_kernels:
            await self._leave_running()
        ids = list(self.kernels)
        await asyncio.gather(
            *(self.shutdown(i, "shut down with the server") for i in ids),
            *(self._dispose(k, "warm kernel shut down with the server") for k in warm),
            return_exceptions=True,
        )
        stray = list(self._alive)  # an owner's (a notebook API's pool) that it did not end: none outlives us
        for kernel in stray:
            log.warning(
                "kernel %s (%s) was still running at shutdown outside the registry; ending it", kernel.id, kernel.name
            )
        await asyncio.gather(*(self._dispose(k, "shut down with the server") for k in stray), return_exceptions=True)
        if self._context is not None:
            self._context.destroy(linger=0)
        if self._ipc_dir is not None and not self.settings.keep_kernels:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
        if self.registry is not None:
            self.registry.close()

    # kept kernels (keep_kernels, state_dir) -------------------------------------------------------
    async def _leave_running(self) -> None:
        """The listed kernels left running for the next server: out of the registry in memory,
        in the one on disk with where their output numbering stopped."""
        assert self.registry is not None
        kept = [k for k in self.kernels.values() if k.execution_state != "dead"]
        for kernel in kept:
            del self.kernels[kernel.id]
            self._alive.discard(kernel)
            if kernel.watcher is not None:
                kernel.watcher.cancel()
            if kernel.relay is not None:
                await kernel.relay.close("the server stopped; the kernel keeps running")
                journal = kernel.relay.kept()
                self.registry.update(kernel.id, journal=journal, last_activity=kernel.relay.last_activity)
            kernel.km._close_control_socket()
            log.info("kernel %s (%s) left running for the next server (keep_kernels)", kernel.id, kernel.name)

    async def adopt(self) -> None:
        """At start-up: the kernels a previous server on this state_dir left (stopped with
        keep_kernels, or crashed).  With keep_kernels, the listed ones are re-attached to (a dead
        one is listed dead); everything else still running is ended."""
        assert self.registry is not None
        for entry in self.registry.entries():
            keep = self.settings.keep_kernels and entry.listed
            try:
                km = await self._manager_for(entry)
                alive = await km.is_alive()
                if not keep:
                    if alive:
                        log.warning(
                            "kernel %s (%s) was left running by a previous server; ending it (keep_kernels is off)",
                            entry.id,
                            entry.name,
                        )
                        await km.shutdown_kernel(now=True)
                    self.registry.remove(entry.id)
                    continue
            except Exception as e:
                log.warning("kernel %s (%s) in %s: %s; forgotten", entry.id, entry.name, self.settings.state_dir, e)
                self.registry.remove(entry.id)
                continue
            kernel = Kernel(entry.id, entry.name, km, created=entry.created)
            self.kernels[kernel.id] = kernel
            if not alive:
                kernel.execution_state, kernel.reason = "dead", "the kernel ended while Portico was not running"
                log.warning("kernel %s (%s) %s", kernel.id, kernel.name, kernel.reason)
                continue
            kernel.relay = KernelRelay(
                self.context,
                dict(km.get_connection_info()),
                self.stats,
                self.relay_options,
                kernel.set_state,
                iopub_hwm=SUBSCRIBER_HWM if km.holds_iopub else 0,
            )
            kernel.relay.resume(entry.journal)
            kernel.relay.last_activity = entry.last_activity
            kernel.execution_state = "idle"  # until its next status says otherwise
            self._alive.add(kernel)
            kernel.watcher = asyncio.create_task(self._watch(kernel))
            log.info("kernel %s (%s) re-attached: the previous server left it running", kernel.id, kernel.name)

    async def _manager_for(self, entry: Entry) -> KernelManager:
        """A kernel manager for a kernel this server did not start, from its registry entry."""
        km = KernelManager(
            kernel_name=entry.name,
            kernel_id=entry.id,
            kernel_spec_manager=self.specs.manager,
            context=self.context,
        )
        km.load_connection_info(entry.connection)  # type: ignore[arg-type]
        km.shutdown_wait_time = self.settings.kernel_shutdown_wait
        km.iopub_hwm = self.settings.kernel_iopub_hwm
        own = entry.provisioner.get("portico") or {}
        km.holds_iopub = bool(own.get("holds_iopub"))
        km._launch_args = dict(own.get("launch_args") or {})  # what a restart starts the new kernel with
        spec = km.kernel_spec
        name = remote.provisioner_of(spec)
        provisioner: Any
        if name is None:
            provisioner = AdoptedLocalProvisioner(kernel_id=entry.id, kernel_spec=spec, parent=km)
        else:
            await remote.prepare(name)
            factory = KernelProvisionerFactory.instance(parent=km.parent)
            provisioner = factory.create_provisioner_instance(entry.id, spec, km)
        await provisioner.load_provisioner_info(entry.provisioner)
        km.provisioner = provisioner
        return km

    # culling -----------------------------------------------------------------------------
    async def _cull_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.cull_interval)
            await self.cull_once()

    async def cull_once(self) -> None:
        s, now = self.settings, time.time()
        for kernel in list(self.kernels.values()):
            relay = kernel.relay
            if relay is None or now - relay.last_activity < s.cull_idle_timeout:
                continue
            if relay.clients and not s.cull_connected:
                continue
            if kernel.execution_state == "busy" and not s.cull_busy:
                continue
            idle = int(now - relay.last_activity)
            relay.broadcast_status("dead")
            await self.shutdown(kernel.id, f"culled after {idle} s idle (cull_idle_timeout {s.cull_idle_timeout:g} s)")
