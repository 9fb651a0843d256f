"""What a client may ask of a new kernel, checked before anything starts.

The REST routes (POST /api/kernels) and sessions (POST /api/sessions) read their bodies with
`start_request`; every field that is wrong is a BadRequest naming it.  `Kernels.start` gets
only what passed: a kernelspec name, a working directory inside root_dir, the environment
entries the settings allow, and a kernel id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..environment import without_secrets
from ..errors import BadRequest
from ..paths import confine
from ..settings import Settings

ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_ENV_ENTRIES = 256
MAX_ENV_VALUE = 32 * 1024


@dataclass(frozen=True)
class StartRequest:
    name: str  # a kernelspec name (that it is installed is for Kernels.start to say)
    cwd: str  # the kernel's working directory, inside root_dir
    env: dict[str, str] = field(default_factory=dict)  # the accepted entries, besides the inherited ones
    kernel_id: str | None = None  # a canonical UUID string, when the client chose one


def start_request(
    settings: Settings, name: Any = None, path: Any = None, env: Any = None, kernel_id: Any = None
) -> StartRequest:
    if name is not None and not isinstance(name, str):
        raise BadRequest("name must be a kernelspec name (a string).")
    return StartRequest(
        name or settings.default_kernel_name,
        working_dir(settings, path),
        kernel_env(settings, env),
        None if kernel_id is None else valid_id(kernel_id),
    )


def working_dir(settings: Settings, path: Any) -> str:
    """The directory for `path` (a notebook or a directory), confined to root_dir."""
    if path is None or path == "":
        return settings.root_dir
    root = Path(settings.root_dir).resolve()
    target = confine(root, path, hidden=settings.contents_allow_hidden)
    while not target.is_dir() and target != root:
        target = target.parent
    return str(target)


def kernel_env(settings: Settings, requested: Any) -> dict[str, str]:
    """The accepted request entries: KERNEL_* and kernel_env_allow names, plain names, strings."""
    if requested is None:
        requested = {}
    if not isinstance(requested, dict):
        raise BadRequest("env must be an object of string names to string values.")
    if len(requested) > MAX_ENV_ENTRIES:
        raise BadRequest(f"env has {len(requested)} entries; at most {MAX_ENV_ENTRIES} are accepted.")
    env: dict[str, str] = {}
    allowed = set(settings.kernel_env_allow)
    for name, value in requested.items():
        if not isinstance(value, str) or not ENV_NAME.fullmatch(name):
            raise BadRequest(f"env entry {name!r} must have a plain name and a string value.")
        if len(value) > MAX_ENV_VALUE:
            raise BadRequest(f"env entry {name!r} is longer than {MAX_ENV_VALUE} characters.")
        if name.startswith("KERNEL_") or name in allowed:
            env[name] = value
    return without_secrets(env, settings.token)


def valid_id(kernel_id: Any) -> str:
    try:
        if isinstance(kernel_id, str):
            return str(uuid.UUID(kernel_id))
    except ValueError:
        pass
    raise BadRequest("kernel_id must be a UUID string.")
