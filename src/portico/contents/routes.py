"""Jupyter Server's /api/contents routes, and /files/ for raw downloads, over one Store.

File system work runs in a worker thread, so a large file or a slow disk never stalls the
event loop that relays kernel messages.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from aiohttp import web

from ..errors import BadRequest, Forbidden, MethodNotAllowed, NotFound, PorticoError
from ..settings import Settings
from ..web.jsonio import json_body, json_response
from .store import Store

T = TypeVar("T")


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn in a worker thread; an OSError becomes a clear error naming the system's reason."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise Forbidden(f"The file system refused: {reason}.") from None
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            raise NotFound(f"No such file or directory: {reason}.") from None
        if e.errno in (errno.EINVAL, errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ENAMETOOLONG, errno.EXDEV):
            raise BadRequest(f"The file system refused: {reason}.") from None
        raise PorticoError(f"The file system failed: {reason}.", "File System Error") from None


def _flag(request: web.Request, name: str, default: bool = True) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw in ("0", "1"):
        return raw == "1"
    raise BadRequest(f"{name} must be 0 or 1, got {raw!r}.")


class ContentsRoutes:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings.root_dir, settings.contents_allow_hidden)

    def add_to(self, router: web.UrlDispatcher) -> None:
        b = self.settings.base_url
        checkpoints = b + "api/contents/{path:.*}/checkpoints"
        router.add_route("GET", checkpoints, self.list_checkpoints)
        router.add_route("POST", checkpoints, self.create_checkpoint)
        router.add_route("POST", checkpoints + "/{checkpoint_id}", self.restore_checkpoint)
        router.add_route("DELETE", checkpoints + "/{checkpoint_id}", self.delete_checkpoint)
        router.add_route("*", checkpoints, self.no_such_method)  # not the contents routes below
        router.add_route("*", checkpoints + "/{checkpoint_id}", self.no_such_method)
        for path in (b + "api/contents", b + "api/contents/{path:.*}"):
            router.add_route("GET", path, self.get)
            router.add_route("PUT", path, self.save)
            router.add_route("POST", path, self.create)
            router.add_route("PATCH", path, self.rename)
            router.add_route("DELETE", path, self.delete)
        router.add_route("GET", b + "files/{path:.*}", self.file)

    def _location(self, path: str) -> str:
        return self.settings.base_url + "api/contents/" + quote(path)

    @staticmethod
    def _path(request: web.Request) -> str:
        return request.match_info.get("path", "")

    async def get(self, request: web.Request) -> web.Response:
        content = _flag(request, "content")
        model = await in_thread(
            self.store.get,
            self._path(request),
            content=content,
            type_=request.query.get("type"),
            format_=request.query.get("format"),
        )
        return json_response(model)

    async def save(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        model, created = await in_thread(self.store.save, self._path(request), body)
        return json_response(model, 201 if created else 200, {"Location": self._location(model["path"])})

    async def create(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        model = await in_thread(self.store.create, self._path(request), body)
        return json_response(model, 201, {"Location": self._location(model["path"])})

    async def rename(self, request: web.Request) -> web.Response:
        body = await json_body(request)
        model = await in_thread(self.store.rename, self._path(request), body)
        return json_response(model, headers={"Location": self._location(model["path"])})

    async def delete(self, request: web.Request) -> web.Response:
        await in_thread(self.store.delete, self._path(request))
        return web.Response(status=204)

    async def list_checkpoints(self, request: web.Request) -> web.Response:
        return json_response(await in_thread(self.store.list_checkpoints, self._path(request)))

    async def create_checkpoint(self, request: web.Request) -> web.Response:
        checkpoint = await in_thread(self.store.create_checkpoint, self._path(request))
        location = self._location(self.store.clean(self._path(request))) + "/checkpoints/" + checkpoint["id"]
        return json_response(checkpoint, 201, {"Location": location})

    async def restore_checkpoint(self, request: web.Request) -> web.Response:
        await in_thread(self.store.restore_checkpoint, self._path(request), request.match_info["checkpoint_id"])
        return web.Response(status=204)

    async def delete_checkpoint(self, request: web.Request) -> web.Response:
        await in_thread(self.store.delete_checkpoint, self._path(request), request.match_info["checkpoint_id"])
        return web.Response(status=204)

    async def no_such_method(self, request: web.Request) -> web.Response:
        allowed = "GET, POST" if "checkpoint_id" not in request.match_info else "POST, DELETE"
        raise MethodNotAllowed(f"Method not allowed here; allowed: {allowed}.", headers={"Allow": allowed})

    async def file(self, request: web.Request) -> web.FileResponse:
        path = await in_thread(self.store.resolve, self._path(request))
        if path.is_dir():
            raise NotFound(f"{self.store.clean(self._path(request))} is a directory.")
        headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
        if _flag(request, "download", False):
            headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(path.name)}"
        return web.FileResponse(path, headers=headers)
