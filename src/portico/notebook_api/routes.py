"""Notebooks mounted as HTTP services beside the kernels API.

Each mount serves one notebook under its prefix: its annotated routes, /_api/spec/openapi.json,
/_api/spec/swagger.json and (when allowed) /_api/source.  With reload on, a changed file
becomes a new version: its pool is started and seeded, then takes every new request, while
the old version's kernels finish what they hold and end.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

from ..errors import BadGateway, GatewayTimeout, MethodNotAllowed, NotFound, PorticoError, SettingsError
from ..kernels.manager import Kernels
from ..kernels.relay import RelayOptions
from ..kernels.seed import Seed
from ..paths import confine
from ..settings import Settings
from ..urls import PAGE, Owners, first_segment
from ..web.jsonio import json_response
from . import exchange, openapi, parse
from .runner import KernelDied, KernelPool, Step, Worker

log = logging.getLogger("portico")

NOTEBOOK = "a notebook API's"

RELOAD_POLL = 0.5  # seconds between looks at a notebook file when reload has no file system events
NO_JOURNAL = RelayOptions(client_limit=1 << 20, journal_bytes=0, journal_age=0, rate_limit=None)


@dataclass
class Version:
    api: parse.NotebookApi
    pool: KernelPool
    stamp: tuple[int, int]


def mounts(settings: Settings) -> list[tuple[str, str]]:
    """(URL prefix, file) for each notebook option entry: PATH, or /PREFIX=PATH."""
    out: list[tuple[str, str]] = []
    for entry in settings.notebook:
        prefix, sep, path = entry.partition("=")
        if not sep:
            prefix, path = "/", entry
        prefix = "/" + prefix.strip().strip("/") + "/" if prefix.strip().strip("/") else "/"
        if any(p == prefix for p, _ in out):
            raise SettingsError(
                f"option notebook: two notebooks mount at {prefix}; give each its own "
                "prefix, e.g. --notebook /shop=shop.ipynb,/stock=stock.ipynb"
            )
        out.append((prefix, path.strip()))
    return out


class Mount:
    def __init__(
        self, settings: Settings, kernels: Kernels, prefix: str, file: str, installed: dict[str, str], owners: Owners
    ) -> None:
        self.settings = settings
        self.kernels = kernels
        self.file = file
        self.url_prefix = settings.base_url + prefix.lstrip("/")
        self.installed = installed
        self.prefixes = parse.comment_prefixes(settings.notebook_comment_prefixes)
        api = self._load()
        self.owners = owners
        self.at_root = prefix == "/"
        if not self.at_root:
            if owners.gives_way(first_segment(prefix)):  # a proxy plugin nobody named: the notebook is served
                owners.give_way(first_segment(prefix), f"notebook {file} (mounted at {prefix})")
            owner = owners.owner(first_segment(prefix))
            if owner not in (None, NOTEBOOK):
                raise SettingsError(f"notebook {file}: the prefix {prefix} is {owner}; choose another")
            owners.table[first_segment(prefix)] = NOTEBOOK  # notebooks may share a first segment
        else:
            for route in api.routes:
                first = first_segment(route.path)
                owner = owners.owner(first)
                if owners.gives_way(first):  # a proxy plugin nobody named: the notebook asked for is served
                    owners.give_way(first, f"notebook {file} ({route.verb} {route.path})")
                elif owner == NOTEBOOK:  # shadowed by the notebook mounted there, as before: said, not refused
                    log.warning(
                        "notebook %s: %s %s is not reachable: /%s/ is another notebook's prefix",
                        file,
                        route.verb,
                        route.path,
                        first,
                    )
                elif owner is not None:
                    hint = " (or turn the page off: --page false)" if owner == PAGE else ""
                    raise SettingsError(
                        f"notebook {file}: {route.verb} {route.path} collides with {owner} "
                        f"/{first} routes; mount the notebook under a prefix, e.g. --notebook /svc={file}{hint}"
                    )
        self.version = Version(api, self._pool(api), self._stamp())
        self._watcher: asyncio.Task[None] | None = None

    def _load(self) -> parse.NotebookApi:
        return parse.load(
            self.file, kernel_name=self.settings.notebook_kernel_name, installed=self.installed, prefixes=self.prefixes
        )

    def _stamp(self) -> tuple[int, int]:
        try:
            st = os.stat(self.file)
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def _pool(self, api: parse.NotebookApi) -> KernelPool:
        s = self.settings
        poll = s.kernel_poll_interval

        seed = api.seed
        if self.one_execution(api):  # the helper the one-execution form of a request calls
            seed = Seed(seed.path, seed.kernel_name, (exchange.PYTHON_PRELUDE, *seed.cells), (0, *seed.numbers))

        async def launch() -> Worker:
            kernel = await self.kernels.launch_private(api.kernel_name, str(api.path.parent), seed, NO_JOURNAL)
            return Worker(kernel, poll)

        async def dispose(worker: Worker, reason: str) -> None:
            worker.close()
            await self.kernels.dispose(worker.kernel, reason)

        return KernelPool(
            f"notebook {api.path.name}",
            launch,
            dispose,
            s.notebook_pool_min,
            max(s.notebook_pool_max, s.notebook_pool_min),
            s.notebook_queue_size,
            s.notebook_idle_timeout,
        )

    def one_execution(self, api: parse.NotebookApi) -> bool:
        return api.language == "python" and self.settings.notebook_one_execution

    # lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self.version.pool.fill()
        except PorticoError as e:
            raise SettingsError(f"notebook {self.file}: {e.message}") from None
        api = self.version.api
        log.info(
            "notebook %s: %d routes at %s (%s kernel, pool %d..%d)",
            self.file,
            len(api.routes),
            self.url_prefix,
            api.kernel_name,
            self.settings.notebook_pool_min,
            self.settings.notebook_pool_max,
        )
        if self.settings.reload:
            self._watcher = asyncio.create_task(self._watch())

    def stop_serving(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self.version.pool.stop_serving()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        await self.version.pool.close()

    async def _watch(self) -> None:
        """Reload on the file system's events for the notebook (inotify, through watchfiles; its
        directory is watched, since editors save by renaming a new file over the old one).  Where
        there are none (a file system without them, the watch limit reached), its stamp is looked
        at every RELOAD_POLL seconds."""
        folder, name = os.path.split(os.path.abspath(self.file))
        try:
            import watchfiles  # here, not at import: it brings anyio, and only --reload needs it

            async for _ in watchfiles.awatch(
                folder,
                watch_filter=lambda _, path: Path(path).name == name,
                debounce=50,
                step=20,
                recursive=False,
            ):
                await self._changed()
        except (ImportError, OSError, RuntimeError) as e:  # not installed; watchfiles' notify errors
            log.warning("reload: no file system events for %s (%s); looking every %g s", self.file, e, RELOAD_POLL)
        while True:
            await asyncio.sleep(RELOAD_POLL)
            await self._changed()

    async def _changed(self) -> None:
        stamp = self._stamp()
        if stamp != self.version.stamp:
            await self.reload(stamp)

    async def reload(self, stamp: tuple[int, int]) -> None:
        old = self.version
        try:
            api = self._load()
        except SettingsError as e:
            log.error("reload: %s; still serving the previous version", e)
            old.stamp = stamp
            return
        pool = self._pool(api)
        try:
            await pool.fill()
        except Exception as e:
            log.error(
                "reload of notebook %s: %s; still serving the previous version", self.file, getattr(e, "message", e)
            )
            old.stamp = stamp
            await pool.close()
            return
        self.version = Version(api, pool, stamp)
        old.pool.retire()
        log.info("notebook %s reloaded: %d routes", self.file, len(api.routes))

    # routes ------------------------------------------------------------------------------
    def add_to(self, router: web.UrlDispatcher) -> None:
        p = self.url_prefix
        router.add_route("GET", p + "_api/spec/openapi.json", self.openapi)
        router.add_route("GET", p + "_api/spec/swagger.json", self.swagger)
        if self.settings.notebook_source:
            router.add_route("GET", p + "_api/source", self.source)
        # at the root, only what nobody else owns: the others' paths get their own 404 or 405
        router.add_route("*", p + (self.owners.free_tail() if self.at_root else "{tail:.*}"), self.handle)

    async def openapi(self, request: web.Request) -> web.Response:
        return json_response(openapi.openapi(self.version.api, self.url_prefix.rstrip("/") or "/"))

    async def swagger(self, request: web.Request) -> web.Response:
        return json_response(openapi.swagger(self.version.api, self.url_prefix))

    async def source(self, request: web.Request) -> web.Response:
        api = self.version.api
        return web.Response(
            body=api.source,
            content_type="application/x-ipynb+json",
            headers={"Content-Disposition": f'attachment; filename="{api.path.name}"'},
        )

    def match(self, version: Version, method: str, raw_path: str) -> tuple[parse.Route, dict[str, str]]:
        allowed: list[str] = []
        for route in version.api.routes:
            m = route.pattern.fullmatch(raw_path)
            if m is None:
                continue
            if route.verb == method:
                return route, {k: unquote(v) for k, v in m.groupdict().items()}
            allowed.append(route.verb)
        if allowed:
            raise MethodNotAllowed(
                f"{raw_path} takes {', '.join(dict.fromkeys(allowed))}, not {method}.",
                headers={"Allow": ", ".join(dict.fromkeys(allowed))},
            )
        raise NotFound(f"No endpoint of notebook {version.api.path.name} matches {raw_path}.")

    async def handle(self, request: web.Request) -> web.StreamResponse:
        version = self.version
        raw_path = "/" + request.rel_url.raw_path[len(self.url_prefix) :]
        route, params = self.match(version, request.method, raw_path)
        bundle = await exchange.request_bundle(request, params, self.settings.token)
        if self.one_execution(version.api):
            steps = [
                Step(
                    exchange.python_step_code(route.code, bundle),
                    expressions=exchange.python_expressions(route.response_code),
                )
            ]
        else:  # any language: set REQUEST, run the cell, run ResponseInfo; sent at once, run in order
            steps = [Step(exchange.request_code(bundle, version.api.language), silent=True), Step(route.code)]
            if route.response_code is not None:
                steps.append(Step(route.response_code, silent=True))
        timeout = route.timeout or self.settings.notebook_timeout
        where = f"{route.verb} {route.path}"
        pool = version.pool
        worker, run = await pool.start(steps)
        try:
            async with asyncio.timeout_at(run.started + timeout):
                await asyncio.shield(run.finished)
        except TimeoutError:
            if not run.finished.done():
                pool.abandon(worker, run, self.settings.notebook_interrupt_grace)
                raise GatewayTimeout(
                    f"{where} ran over its {timeout:g} s timeout (option notebook_timeout, or "
                    "timeout= in the annotation); its kernel was interrupted."
                ) from None
        except KernelDied:
            pool.release(worker)  # ended, and replaced
            raise BadGateway(f"The kernel serving {where} died; it is being replaced.", "Kernel Died") from None
        except asyncio.CancelledError:
            pool.abandon(worker, run, self.settings.notebook_interrupt_grace)
            raise
        outputs = run.results
        return self.respond(outputs, where, route.response_code is not None)

    def respond(self, outputs: list[exchange.Outputs], where: str, has_info: bool) -> web.Response:
        cell = outputs[0] if len(outputs) == 1 else outputs[1]
        if cell.error is not None:
            raise exchange.cell_error(cell, where, self.settings.notebook_debug)
        status, headers = 200, dict[str, str]()
        if has_info and len(outputs) == 1:
            status, headers = exchange.parse_response_info(exchange.printed_by_expression(cell, where), where)
        elif has_info:
            status, headers = exchange.response_info(outputs[2], where)
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), None)
        body, content_type = exchange.body(cell, content_type)
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = content_type
        return web.Response(status=status, body=body, headers=headers)


class NotebookApis:
    """Every mounted notebook."""

    def __init__(self, settings: Settings, kernels: Kernels, owners: Owners) -> None:
        specs = kernels.specs.manager.get_all_specs() if settings.notebook else {}
        installed = {name: str(s["spec"].get("language", "")) for name, s in specs.items()}
        entries = mounts(settings)
        # longest prefixes first: a root mount's catch-all must not shadow the others
        self.mounts = [
            Mount(settings, kernels, prefix, file, installed, owners)
            for prefix, file in sorted(entries, key=lambda e: -len(e[0]))
        ]
        self.public_dir = settings.notebook_public_dir
        self.base_url = settings.base_url
        if self.public_dir and not Path(self.public_dir).is_dir():
            raise SettingsError(f"option notebook_public_dir: {self.public_dir} is not a directory")

    def add_to(self, router: web.UrlDispatcher) -> None:
        if self.public_dir:
            root = Path(self.public_dir).resolve()

            async def public(request: web.Request) -> web.StreamResponse:
                """A file of the public directory; anything else is Portico's JSON 404 (hidden names too)."""
                path = confine(root, request.match_info["path"])
                if not path.is_file():
                    raise NotFound(f"No file {request.match_info['path']!r} in the public directory.")
                return web.FileResponse(path)

            router.add_get(self.base_url + "public/{path:.*}", public)
        for mount in self.mounts:
            mount.add_to(router)

    def status(self) -> list[dict[str, object]]:
        return [{"prefix": m.url_prefix, "notebook": m.file, **m.version.pool.counts()} for m in self.mounts]

    # lifecycle (portico.lifecycle.Component) ------------------------------------------------
    name = "notebook APIs"

    async def start_up(self) -> None:
        """Every mount's pool filled and seeded: before the URL is printed; a failing seed stops the start."""
        await asyncio.gather(*(m.start() for m in self.mounts))

    def stop_accepting(self) -> None:
        for mount in self.mounts:
            mount.stop_serving()

    async def disconnect(self, reason: str) -> None:
        """Nothing: a notebook API has no long-lived connections."""

    async def end(self) -> None:
        await asyncio.gather(*(m.close() for m in self.mounts), return_exceptions=True)
