"""Path confinement: the one place a path a client names becomes a file system path.

Kernels' and sessions' `path`, the contents API, kernelspec resources and the page's assets all
go through confine(), so they share one set of rules:
- a path is a string, with `/` between segments (a leading `/`, empty and `.` segments are ignored);
- NUL is refused (400, naming the field), and so is any `..` segment (403), even one that would
  stay inside the root;
- a segment starting with a dot is a hidden name: not found (404) unless hidden names are allowed;
- the result, its symlinks followed, must be the root or inside it (403).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import BadRequest, Forbidden, NotFound


def clean(api_path: Any, field: str = "path") -> str:
    """The API form of a path: no leading or trailing slash, no empty or '.' segments."""
    if not isinstance(api_path, str):
        raise BadRequest(f"{field} must be a string: a path relative to the server's root directory.")
    if "\0" in api_path:
        raise BadRequest(f"{field} may not contain NUL.")
    parts = [p for p in api_path.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise Forbidden(f"{field} {api_path!r} leaves the root directory: it has a '..' segment.")
    return "/".join(parts)


def inside(root: Path, path: Path) -> bool:
    """Whether path, its symlinks followed, is root (itself already resolved) or under it."""
    real = Path(os.path.realpath(path))
    return real == root or root in real.parents


def confine(root: Path, api_path: Any, *, field: str = "path", hidden: bool = False) -> Path:
    """The file system path that api_path names under root (a resolved directory), or an error."""
    name = clean(api_path, field)
    if not hidden and any(part.startswith(".") for part in name.split("/")):
        raise NotFound(f"No such file or directory: {name}")
    target = root / name if name else root
    if not inside(root, target):
        raise Forbidden(f"{field} {name!r} leads outside the root directory.")
    return target
