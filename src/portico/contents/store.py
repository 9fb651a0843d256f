"""Files under root_dir as Jupyter Server's contents models: list, read, save, create, rename, delete.

Every API path is resolved by :meth:`Store.resolve`, the one place that confines paths: a `..`
segment or a symlink leading out of the root is refused (403), hidden names are not found unless
allowed.  Saves write a temporary file beside the target and rename it over the target, so a
reader or a crash never sees half a file; notebooks are validated as nbformat 4 first, and an
invalid one is refused with the validator's message, the file on disk untouched.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from .. import paths
from ..errors import BadRequest, Conflict, NotFound
from ..times import iso

CHECKPOINT_DIR = ".ipynb_checkpoints"
CHECKPOINT_ID = "checkpoint"  # one checkpoint per file, as Jupyter Server's file checkpoints keep

# Read once, at import, while the server is single-threaded: reading the umask means setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _nbformat() -> Any:
    import nbformat  # imported on first use: it costs a quarter of a second

    return nbformat


def validate_notebook(content: Any) -> Any:
    """The notebook node of a v4 notebook dict; BadRequest with the validator's message otherwise."""
    nbf = _nbformat()
    if not isinstance(content, dict):
        raise BadRequest("A notebook's content must be a JSON object.", "Invalid Notebook")
    if content.get("nbformat") != 4:
        raise BadRequest(
            f"Only nbformat 4 notebooks can be saved, this one says nbformat {content.get('nbformat')!r}.",
            "Invalid Notebook",
        )
    node = nbf.from_dict(content)
    try:
        nbf.validate(node)
    except nbf.ValidationError as e:
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise BadRequest(f"Invalid notebook at {where}: {e.message}", "Invalid Notebook") from None
    return node


def notebook_text(node: Any) -> str:
    nbf = _nbformat()
    text: str = nbf.writes(node, version=nbf.NO_CONVERT)
    return text if text.endswith("\n") else text + "\n"


def new_notebook() -> dict[str, Any]:
    return {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def _field(body: dict[str, Any], key: str) -> str | None:
    """A string field of a request body; absent and null are None, another type a 400."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string.")
    return value


class Store:
    def __init__(self, root_dir: str, allow_hidden: bool = False) -> None:
        self.root = Path(root_dir).resolve()
        self.allow_hidden = allow_hidden

    # paths ---------------------------------------------------------------------------------
    @staticmethod
    def clean(api_path: str) -> str:
        return paths.clean(api_path)

    def resolve(self, api_path: str, *, must_exist: bool = True) -> Path:
        """The file system path of an API path, confined to the root (symlinks followed and checked)."""
        target = paths.confine(self.root, api_path, hidden=self.allow_hidden)
        if must_exist and not target.exists():
            raise NotFound(f"No such file or directory: {self.api_path(target)}")
        return target

    def _inside(self, path: Path) -> bool:
        return paths.inside(self.root, path)

    def api_path(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix() if path != self.root else ""

    # models --------------------------------------------------------------------------------
    def model(
        self, path: Path, *, content: bool = True, type_: str | None = None, format_: str | None = None
    ) -> dict[str, Any]:
        try:
            st = path.stat()
        except OSError:
            raise NotFound(f"No such file or directory: {self.api_path(path)}") from None
        name = path.name if path != self.root else ""
        kind = (
            "directory"
            if stat.S_ISDIR(st.st_mode)
            else "notebook"
            if path.suffix == ".ipynb" and type_ != "file"
            else "file"
        )
        if type_ and type_ != kind:
            raise BadRequest(f"{self.api_path(path) or '/'} is a {kind}, not a {type_}.", "Bad Type")
        model: dict[str, Any] = {
            "name": name,
            "path": self.api_path(path),
            "type": kind,
            "created": iso(st.st_ctime),
            "last_modified": iso(st.st_mtime),
            "writable": os.access(path, os.W_OK),
            "mimetype": None,
            "content": None,
            "format": None,
            "size": None if kind == "directory" else st.st_size,
        }
        if kind == "file":
            model["mimetype"] = mimetypes.guess_type(name)[0] or "text/plain"
        if not content:
            return model
        if kind == "directory":
            model["content"] = [self.model(child, content=False) for child in self._children(path)]
            model["format"] = "json"
        elif kind == "notebook":
            model["content"], model["format"] = self._read_notebook(path), "json"
        else:
            model["content"], model["format"] = self._read_file(path, format_)
            if model["format"] == "base64" and model["mimetype"] == "text/plain":
                model["mimetype"] = "application/octet-stream"
        return model

    def _children(self, path: Path) -> list[Path]:
        out = []
        for child in sorted(path.iterdir(), key=lambda p: p.name.lower()):
            if not self.allow_hidden and child.name.startswith("."):
                continue
            if not self._inside(child) or not child.exists():
                continue  # a symlink leading out, or a dangling one: not listed
            out.append(child)
        return out

    def _read_notebook(self, path: Path) -> Any:
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            return _nbformat().reads(text, as_version=4)
        except Exception as e:  # nbformat raises json errors and its own NotJSONError
            raise BadRequest(f"Unreadable notebook {self.api_path(path)}: {e}", "Unreadable Notebook") from None

    def _read_file(self, path: Path, format_: str | None) -> tuple[str, str]:
        raw = path.read_bytes()
        if format_ != "base64":
            try:
                return raw.decode("utf-8"), "text"
            except UnicodeDecodeError:
                if format_ == "text":
                    raise BadRequest(f"{self.api_path(path)} is not UTF-8 text.", "Bad Format") from None
        return base64.b64encode(raw).decode("ascii"), "base64"

    # operations ----------------------------------------------------------------------------
    def get(self, api_path: str, *, content: bool, type_: str | None, format_: str | None) -> dict[str, Any]:
        if type_ not in (None, "directory", "file", "notebook"):
            raise BadRequest(f"type must be directory, file or notebook, got {type_!r}.")
        if format_ not in (None, "text", "base64", "json"):
            raise BadRequest(f"format must be text or base64, got {format_!r}.")
        return self.model(self.resolve(api_path), content=content, type_=type_, format_=format_)

    def save(self, api_path: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(model without content, created)."""
        target = self.resolve(api_path, must_exist=False)
        if target == self.root:
            raise BadRequest("The root directory cannot be written.")
        kind = _field(body, "type") or ("notebook" if target.suffix == ".ipynb" else "file")
        if _field(body, "format") not in (None, "json", "text", "base64"):
            raise BadRequest(f"format must be json, text or base64, got {body.get('format')!r}.")
        existed = target.exists()
        if not target.parent.is_dir():
            raise NotFound(f"No such directory: {self.api_path(target.parent)}")
        if kind == "directory":
            if existed and not target.is_dir():
                raise Conflict(f"{self.api_path(target)} exists and is not a directory.")
            target.mkdir(exist_ok=True)
            return self.model(target, content=False), not existed
        if existed and target.is_dir():
            raise Conflict(f"{self.api_path(target)} is a directory.")
        if body.get("chunk") is not None:
            return self._save_chunk(target, kind, body), not existed
        if "content" not in body or body["content"] is None:
            if existed:
                raise BadRequest("No content to save.")
            body = {**body, "content": new_notebook() if kind == "notebook" else "", "format": "text"}
        if kind == "notebook":
            data = notebook_text(validate_notebook(body["content"])).encode("utf-8")
        elif kind == "file":
            data = self._file_bytes(body)
        else:
            raise BadRequest(f"type must be notebook, file or directory, got {kind!r}.")
        self._write_atomic(target, data)
        return self.model(target, content=False), not existed

    def _save_chunk(self, target: Path, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """One piece of an upload, as Jupyter Server takes them (chunk 1, 2, ..., then -1 for the
        last); the pieces gather in a hidden file beside the target, which takes its place whole
        with the last, so no reader ever sees half an upload."""
        chunk = body["chunk"]
        if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk == 0 or chunk < -1:
            raise BadRequest(f"chunk must be 1, 2, ... and -1 for the last, got {chunk!r}.")
        if kind != "file":
            raise BadRequest("Only files are uploaded in chunks (type file).")
        data = self._file_bytes(body)
        part = target.with_name(f".~{target.name}.part")
        if chunk != 1 and not part.exists():
            raise Conflict(f"Chunk {chunk} of {self.api_path(target)} has no upload to add to: send chunk 1 first.")
        with open(part, "wb" if chunk == 1 else "ab") as f:
            f.write(data)
            if chunk == -1:
                f.flush()
                os.fsync(f.fileno())
        if chunk != -1:
            return {**self.model(part, content=False), "name": target.name, "path": self.api_path(target)}
        mode = target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_UMASK
        os.chmod(part, mode)
        os.replace(part, target)
        return self.model(target, content=False)

    @staticmethod
    def _file_bytes(body: dict[str, Any]) -> bytes:
        content, fmt = body.get("content"), _field(body, "format") or "text"
        if not isinstance(content, str):
            raise BadRequest("A file's content must be a string.")
        if fmt == "text":
            return content.encode("utf-8")
        if fmt == "base64":
            try:
                return base64.b64decode(content, validate=True)
            except ValueError:
                raise BadRequest("The content is not valid base64.") from None
        raise BadRequest(f"format must be text or base64, got {fmt!r}.")

    @staticmethod
    def _write_atomic(target: Path, data: bytes) -> None:
        mode = target.stat().st_mode & 0o777 if target.exists() else None
        fd, tmp = tempfile.mkstemp(prefix=f".~{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode if mode is not None else 0o666 & ~_UMASK)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def create(self, dir_path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new untitled notebook, file or directory in dir_path, or a copy of copy_from there."""
        directory = self.resolve(dir_path)
        if not directory.is_dir():
            raise BadRequest(f"{self.api_path(directory)} is not a directory; POST creates inside a directory.")
        copy_from = _field(body, "copy_from")
        if copy_from is not None:
            if not self.clean(copy_from):
                raise BadRequest("copy_from must be a path.")
            source = self.resolve(copy_from)
            if source.is_dir():
                raise BadRequest("Directories cannot be copied.")
            stem, suffix = source.stem, source.suffix
            target = self._free_name(directory, f"{stem}-Copy", suffix, first_number=1)
            shutil.copyfile(source, target)
            return self.model(target, content=False)
        kind = _field(body, "type") or "file"
        ext = _field(body, "ext") or ""
        if "/" in ext:
            raise BadRequest("ext must be a file extension such as .txt.")
        if kind == "notebook":
            target = self._free_name(directory, "Untitled", ".ipynb")
            self._write_atomic(target, notebook_text(validate_notebook(new_notebook())).encode())
        elif kind == "directory":
            target = self._free_name(directory, "Untitled Folder", "")
            target.mkdir()
        elif kind == "file":
            target = self._free_name(directory, "untitled", ext if not ext or ext.startswith(".") else "." + ext)
            self._write_atomic(target, b"")
        else:
            raise BadRequest(f"type must be notebook, file or directory, got {kind!r}.")
        return self.model(target, content=False)

    @staticmethod
    def _free_name(directory: Path, stem: str, suffix: str, first_number: int = 0) -> Path:
        n = first_number
        while True:
            name = f"{stem}{n if n else ''}{suffix}"
            if not (directory / name).exists():
                return directory / name
            n += 1

    def rename(self, api_path: str, body: dict[str, Any]) -> dict[str, Any]:
        new = _field(body, "path")
        if not new or not self.clean(new):
            raise BadRequest('PATCH needs the new path: {"path": ...}.')
        source = self.resolve(api_path)
        if source == self.root:
            raise BadRequest("The root directory cannot be renamed.")
        target = self.resolve(new, must_exist=False)
        if target.exists() and target != source:
            raise Conflict(f"{self.api_path(target)} already exists.", "File Exists")
        if not target.parent.is_dir():
            raise NotFound(f"No such directory: {self.api_path(target.parent)}")
        source.rename(target)
        old_checkpoint = self._checkpoint_path(source)
        if old_checkpoint.exists():
            old_checkpoint.rename(self._checkpoint_path(target, create=True))
        return self.model(target, content=False)

    def delete(self, api_path: str) -> None:
        target = self.resolve(api_path)
        if target == self.root:
            raise BadRequest("The root directory cannot be deleted.")
        if target.is_dir() and not target.is_symlink():
            left = [c for c in target.iterdir() if c.name != CHECKPOINT_DIR]
            if left:
                raise BadRequest(f"Directory {self.api_path(target)} is not empty.", "Directory Not Empty")
            shutil.rmtree(target)
            return
        target.unlink()
        checkpoint = self._checkpoint_path(target)
        if checkpoint.exists():
            checkpoint.unlink()

    # checkpoints ---------------------------------------------------------------------------
    def _checkpoint_path(self, path: Path, create: bool = False) -> Path:
        directory = path.parent / CHECKPOINT_DIR
        if create:
            directory.mkdir(exist_ok=True)
        return directory / f"{path.stem}-{CHECKPOINT_ID}{path.suffix}"

    def _file(self, api_path: str) -> Path:
        path = self.resolve(api_path)
        if path.is_dir():
            raise BadRequest("Directories have no checkpoints.")
        return path

    def list_checkpoints(self, api_path: str) -> list[dict[str, str]]:
        checkpoint = self._checkpoint_path(self._file(api_path))
        if not checkpoint.exists():
            return []
        return [{"id": CHECKPOINT_ID, "last_modified": iso(checkpoint.stat().st_mtime)}]

    def create_checkpoint(self, api_path: str) -> dict[str, str]:
        path = self._file(api_path)
        checkpoint = self._checkpoint_path(path, create=True)
        self._write_atomic(checkpoint, path.read_bytes())
        return {"id": CHECKPOINT_ID, "last_modified": iso(checkpoint.stat().st_mtime)}

    def _known_checkpoint(self, api_path: str, checkpoint_id: str) -> tuple[Path, Path]:
        path = self._file(api_path)
        checkpoint = self._checkpoint_path(path)
        if checkpoint_id != CHECKPOINT_ID or not checkpoint.exists():
            raise NotFound(f"No checkpoint {checkpoint_id} for {self.clean(api_path)}.")
        return path, checkpoint

    def restore_checkpoint(self, api_path: str, checkpoint_id: str) -> None:
        path, checkpoint = self._known_checkpoint(api_path, checkpoint_id)
        self._write_atomic(path, checkpoint.read_bytes())

    def delete_checkpoint(self, api_path: str, checkpoint_id: str) -> None:
        _, checkpoint = self._known_checkpoint(api_path, checkpoint_id)
        checkpoint.unlink()
