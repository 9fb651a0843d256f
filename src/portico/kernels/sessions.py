"""Sessions: a path bound to a kernel, as Jupyter Server's /api/sessions keeps them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest, NotFound
from .manager import Kernels
from .requests import start_request


@dataclass
class Session:
    id: str
    path: str
    name: str
    type: str
    kernel_id: str


def _str(body: dict[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadRequest(f"{key} must be a string.")
    return value


class Sessions:
    def __init__(self, kernels: Kernels) -> None:
        self.kernels = kernels
        self.sessions: dict[str, Session] = {}

    def _prune(self) -> None:
        for sid in [s.id for s in self.sessions.values() if s.kernel_id not in self.kernels.kernels]:
            del self.sessions[sid]

    def model(self, s: Session) -> dict[str, Any]:
        return {
            "id": s.id,
            "path": s.path,
            "name": s.name,
            "type": s.type,
            "kernel": self.kernels.get(s.kernel_id).model(),
            "notebook": {"path": s.path, "name": s.name},
        }

    def list(self) -> list[dict[str, Any]]:
        self._prune()
        return [self.model(s) for s in self.sessions.values()]

    def get(self, session_id: str) -> Session:
        self._prune()
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"No such session: {session_id}.", "No Such Session")
        return session

    @staticmethod
    def fields(body: dict[str, Any]) -> tuple[str, str, str, dict[str, Any]]:
        """(path, name, type, kernel) of a request body, the legacy {notebook: {path}} form included."""
        notebook = body.get("notebook")
        if notebook is not None and not isinstance(notebook, dict):
            raise BadRequest("notebook must be an object with a path.")
        legacy = notebook or {}
        path = _str(body, "path") or _str(legacy, "path")
        name = _str(body, "name") or _str(legacy, "name")
        kernel = body.get("kernel") or {}
        if not isinstance(kernel, dict):
            raise BadRequest("kernel must be an object with a name or an id.")
        return path, name, _str(body, "type", "notebook" if notebook else ""), kernel

    async def _kernel_for(self, kernel: dict[str, Any], path: str) -> str:
        if kernel.get("id"):
            return self.kernels.get(str(kernel["id"])).id
        started = await self.kernels.start(
            start_request(self.kernels.settings, kernel.get("name"), path, kernel.get("env"))
        )
        return started.id

    async def create(self, body: dict[str, Any]) -> tuple[Session, bool]:
        """(session, created): a path that already has a session gets that session back."""
        path, name, kind, kernel = self.fields(body)
        if not path:
            raise BadRequest("A session needs a path.")
        self._prune()
        for session in self.sessions.values():
            if session.path == path:
                return session, False
        kernel_id = await self._kernel_for(kernel, path)
        session = Session(str(uuid.uuid4()), path, name or path.rsplit("/", 1)[-1], kind or "notebook", kernel_id)
        self.sessions[session.id] = session
        return session, True

    async def update(self, session_id: str, body: dict[str, Any]) -> Session:
        session = self.get(session_id)
        path, name, kind, kernel = self.fields(body)
        if kernel:
            old = session.kernel_id
            session.kernel_id = await self._kernel_for(kernel, path or session.path)
            if old != session.kernel_id and old in self.kernels.kernels:
                await self.kernels.shutdown(old, "replaced in its session")
        session.path = path or session.path
        session.name = name or session.name
        session.type = kind or session.type
        return session

    async def delete(self, session_id: str) -> None:
        session = self.get(session_id)
        del self.sessions[session_id]
        if session.kernel_id in self.kernels.kernels:
            await self.kernels.shutdown(session.kernel_id, "shut down with its session")
