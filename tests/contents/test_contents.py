"""The contents API over a real root directory: Jupyter Server's models, atomic validated saves, confinement."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import nbformat
import pytest
from yarl import URL

from portico_testing import LocalServer, serving

NOTEBOOK: dict[str, Any] = {
    "nbformat": 4,
    "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "cells": [
        {"id": "a1", "cell_type": "markdown", "metadata": {}, "source": "# Title"},
        {
            "id": "b2",
            "cell_type": "code",
            "metadata": {},
            "execution_count": 1,
            "source": "print('hi')",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
        },
    ],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("contents")


@pytest.fixture
async def srv(root: Path) -> AsyncIterator[LocalServer]:
    async with serving(root_dir=str(root)) as server:
        yield server


async def call(
    http: aiohttp.ClientSession, srv: LocalServer, method: str, path: str, body: Any = None, **params: str
) -> tuple[int, Any]:
    url = URL(srv.url + "api/contents" + path, encoded=True)  # sent as written: no client-side '..' folding
    async with http.request(method, url.with_query(params) if params else url, headers=srv.headers, json=body) as r:
        text = await r.text()
        return r.status, json.loads(text) if text else None


async def test_untitled_names_listing_and_models(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    status, nb = await call(http, srv, "POST", "", {"type": "notebook"})
    assert status == 201 and nb["name"] == "Untitled.ipynb" and nb["type"] == "notebook" and nb["content"] is None
    assert (await call(http, srv, "POST", "", {"type": "notebook"}))[1]["name"] == "Untitled1.ipynb"
    assert (await call(http, srv, "POST", "", {"type": "file", "ext": ".txt"}))[1]["name"] == "untitled.txt"
    folder = (await call(http, srv, "POST", "", {"type": "directory"}))[1]
    assert folder["name"] == "Untitled Folder" and folder["type"] == "directory"
    (root / ".hidden").write_text("secret")
    status, listing = await call(http, srv, "GET", "")
    assert status == 200 and listing["type"] == "directory" and listing["format"] == "json"
    names = {m["name"] for m in listing["content"]}
    assert {"Untitled.ipynb", "Untitled1.ipynb", "untitled.txt", "Untitled Folder"} <= names
    assert ".hidden" not in names
    assert all(m["content"] is None for m in listing["content"])
    nbformat.validate(nbformat.read(root / "Untitled.ipynb", as_version=4))


async def test_models_match_jupyter_servers_own(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    """Jupyter Server's FileContentsManager, on the same files, gives the same fields and content."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    nbformat.write(nbformat.from_dict(NOTEBOOK), root / "same.ipynb")
    (root / "same.txt").write_text("text ✓\n")
    jupyter = FileContentsManager(root_dir=str(root))
    for path in ("same.ipynb", "same.txt"):
        theirs = jupyter.get(path)
        status, ours = await call(http, srv, "GET", "/" + path)
        assert status == 200
        assert set(theirs) - {"hash", "hash_algorithm"} <= set(ours), path
        for key in ("name", "path", "type", "format", "mimetype", "writable", "size"):
            assert ours[key] == theirs[key], (path, key)
        expected = json.loads(json.dumps(theirs["content"]))
        if path.endswith(".ipynb"):  # Jupyter's notebook trust marks cells; Portico sanitizes output instead
            for cell in expected["cells"]:
                cell["metadata"].pop("trusted", None)
        assert json.loads(json.dumps(ours["content"])) == expected, path


async def test_save_validates_and_writes_atomically(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    status, model = await call(
        http, srv, "PUT", "/saved.ipynb", {"type": "notebook", "format": "json", "content": NOTEBOOK}
    )
    assert status == 201 and model["path"] == "saved.ipynb"
    status, _ = await call(
        http, srv, "PUT", "/saved.ipynb", {"type": "notebook", "format": "json", "content": NOTEBOOK}
    )
    assert status == 200
    on_disk = (root / "saved.ipynb").read_bytes()
    nbformat.validate(nbformat.reads(on_disk.decode(), as_version=4))
    assert "".join(json.loads(on_disk)["cells"][1]["outputs"][0]["text"]) == "hi\n"

    broken = json.loads(json.dumps(NOTEBOOK))
    broken["cells"][1]["outputs"][0]["output_type"] = "nonsense"
    status, error = await call(http, srv, "PUT", "/saved.ipynb", {"type": "notebook", "content": broken})
    assert status == 400 and error["reason"] == "Invalid Notebook" and "cells/1/outputs/0" in error["message"]
    del broken["cells"][1]["outputs"]
    status, error = await call(http, srv, "PUT", "/saved.ipynb", {"type": "notebook", "content": broken})
    assert status == 400 and "'outputs' is a required property" in error["message"]
    status, error = await call(
        http, srv, "PUT", "/saved.ipynb", {"type": "notebook", "content": {**NOTEBOOK, "nbformat": 3}}
    )
    assert status == 400 and "nbformat 4" in error["message"]
    assert (root / "saved.ipynb").read_bytes() == on_disk  # refused saves leave the file as it was
    assert not [p for p in root.iterdir() if p.name.startswith(".~")]  # and no temporary file behind


async def test_text_and_binary_files(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    assert (await call(http, srv, "PUT", "/notes.txt", {"type": "file", "format": "text", "content": "café\n"}))[
        0
    ] == 201
    assert (root / "notes.txt").read_text() == "café\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert (root / "notes.txt").stat().st_mode & 0o777 == 0o666 & ~umask  # a new file: as open() would make it
    (root / "notes.txt").chmod(0o600)
    assert (await call(http, srv, "PUT", "/notes.txt", {"type": "file", "format": "text", "content": "café\n"}))[
        0
    ] == 200
    assert (root / "notes.txt").stat().st_mode & 0o777 == 0o600  # a saved file keeps its mode
    blob = bytes(range(256))
    body = {"type": "file", "format": "base64", "content": base64.b64encode(blob).decode()}
    assert (await call(http, srv, "PUT", "/blob.bin", body))[0] == 201
    assert (root / "blob.bin").read_bytes() == blob
    status, model = await call(http, srv, "GET", "/blob.bin")
    assert model["format"] == "base64" and base64.b64decode(model["content"]) == blob
    assert model["mimetype"] == "application/octet-stream"
    status, error = await call(http, srv, "GET", "/blob.bin", format="text")
    assert status == 400 and "not UTF-8" in error["message"]
    status, model = await call(http, srv, "GET", "/notes.txt", content="0")
    assert status == 200 and model["content"] is None and model["size"] == len("café\n".encode())
    assert (await call(http, srv, "PUT", "/x.bin", {"type": "file", "format": "base64", "content": "%%%"}))[0] == 400
    assert (await call(http, srv, "GET", "/notes.txt", type="notebook"))[0] == 400
    assert (await call(http, srv, "GET", "/notes.txt", content="yes"))[0] == 400


async def test_rename_copy_delete(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    (root / "old.txt").write_text("x")
    (root / "taken.txt").write_text("y")
    assert (await call(http, srv, "PATCH", "/old.txt", {"path": "taken.txt"}))[0] == 409
    status, model = await call(http, srv, "PATCH", "/old.txt", {"path": "new.txt"})
    assert status == 200 and model["path"] == "new.txt" and (root / "new.txt").read_text() == "x"
    status, copy = await call(http, srv, "POST", "", {"copy_from": "new.txt"})
    assert status == 201 and copy["name"] == "new-Copy1.txt"
    (root / "full").mkdir()
    (root / "full" / "f").write_text("")
    status, error = await call(http, srv, "DELETE", "/full")
    assert status == 400 and "not empty" in error["message"]
    assert (await call(http, srv, "DELETE", "/full/f"))[0] == 204
    assert (await call(http, srv, "DELETE", "/full"))[0] == 204
    assert not (root / "full").exists()
    assert (await call(http, srv, "DELETE", "/new.txt"))[0] == 204
    assert (await call(http, srv, "DELETE", "/new.txt"))[0] == 404
    assert (await call(http, srv, "DELETE", ""))[0] == 400


@pytest.mark.parametrize("path", ["/%2E%2E/etc/passwd", "/sub/%2E%2E/%2E%2E/x", "/..%2F..%2Fetc"])
async def test_dot_dot_is_refused(http: aiohttp.ClientSession, srv: LocalServer, path: str) -> None:
    for method, body in (("GET", None), ("PUT", {"type": "file", "content": "x"}), ("DELETE", None)):
        status, error = await call(http, srv, method, path, body)
        assert status == 403 and "leaves the root" in error["message"], (method, status, error)


async def test_absolute_paths_and_symlinks_stay_inside(
    http: aiohttp.ClientSession, srv: LocalServer, root: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.txt").write_text("outside")
    os.symlink(tmp_path / "outside.txt", root / "link.txt")
    os.symlink(tmp_path, root / "linkdir")
    status, _ = await call(http, srv, "GET", "//etc/passwd")  # an absolute path is read inside the root
    assert status == 404
    for path in ("/link.txt", "/linkdir", "/linkdir/outside.txt"):
        status, error = await call(http, srv, "GET", path)
        assert status == 403 and "outside the root" in error["message"], path
    status, _ = await call(http, srv, "PUT", "/linkdir/new.txt", {"type": "file", "content": "x"})
    assert status == 403 and not (tmp_path / "new.txt").exists()
    listing = (await call(http, srv, "GET", ""))[1]
    assert not {"link.txt", "linkdir"} & {m["name"] for m in listing["content"]}
    async with http.get(srv.url + "files/link.txt", headers=srv.headers) as r:
        assert r.status == 403
    assert (await call(http, srv, "GET", "/.hidden"))[0] == 404


async def test_checkpoints(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    (root / "cp.txt").write_text("one")
    assert (await call(http, srv, "GET", "/cp.txt/checkpoints")) == (200, [])
    status, checkpoint = await call(http, srv, "POST", "/cp.txt/checkpoints")
    assert status == 201 and checkpoint["id"] == "checkpoint"
    (root / "cp.txt").write_text("two")
    assert (await call(http, srv, "POST", "/cp.txt/checkpoints/checkpoint"))[0] == 204
    assert (root / "cp.txt").read_text() == "one"
    assert (await call(http, srv, "POST", "/cp.txt/checkpoints/other"))[0] == 404
    assert (await call(http, srv, "PATCH", "/cp.txt/checkpoints"))[0] == 405
    assert (await call(http, srv, "DELETE", "/cp.txt/checkpoints/checkpoint"))[0] == 204
    assert (await call(http, srv, "GET", "/cp.txt/checkpoints")) == (200, [])


async def test_files_route_serves_bytes_in_a_sandbox(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    (root / "page.html").write_text("<script>alert(1)</script>")
    async with http.get(srv.url + "files/page.html", headers=srv.headers) as r:
        assert r.status == 200 and await r.text() == "<script>alert(1)</script>"
        assert r.headers["Content-Security-Policy"] == "sandbox"
    async with http.get(srv.url + "files/page.html?download=1", headers=srv.headers) as r:
        assert r.headers["Content-Disposition"].startswith("attachment")
    async with http.get(srv.url + "files/page.html") as r:
        assert r.status == 401
    async with http.get(srv.url + "files/nothing", headers=srv.headers) as r:
        assert r.status == 404


async def test_bad_bodies(http: aiohttp.ClientSession, srv: LocalServer, root: Path) -> None:
    async with http.put(srv.url + "api/contents/x.ipynb", headers=srv.headers, data=b"{not json") as r:
        assert r.status == 400
    for body in (
        {"type": "notebook", "content": "text"},
        {"type": 7},
        {"type": "file", "content": 5},
        {"type": "weird", "content": "x"},
    ):
        assert (await call(http, srv, "PUT", "/x.ipynb", body))[0] == 400, body
    assert (await call(http, srv, "PATCH", "/nothing.txt", {"path": "y"}))[0] == 404
    assert (await call(http, srv, "PATCH", "/saved.ipynb", {}))[0] == 400
    assert (await call(http, srv, "POST", "/saved.ipynb", {"type": "file"}))[0] == 400
    assert (await call(http, srv, "POST", "", {"copy_from": 3}))[0] == 400
    assert (await call(http, srv, "PUT", "/no/such/dir.txt", {"type": "file", "content": "x"}))[0] == 404
    (root / "d").mkdir()
    status, error = await call(http, srv, "PATCH", "/d", {"path": "d/inside"})  # a directory into itself
    assert status == 400 and "Invalid argument" in error["message"]
    status, error = await call(http, srv, "PUT", "/" + "n" * 300 + ".txt", {"type": "file", "content": "x"})
    assert status == 400 and "too long" in error["message"]
    assert (await call(http, srv, "GET", ""))[0] == 200  # and it serves on


async def test_a_chunked_upload_replaces_the_file_whole_with_its_last_chunk(
    http: aiohttp.ClientSession, srv: LocalServer, root: Path
) -> None:
    data = os.urandom(300_000)
    (root / "big.bin").write_bytes(b"the old one")
    pieces = [data[i : i + 100_000] for i in range(0, len(data), 100_000)]
    for n, piece in enumerate(pieces, start=1):
        chunk = -1 if n == len(pieces) else n
        body = {"type": "file", "format": "base64", "content": base64.b64encode(piece).decode(), "chunk": chunk}
        status, model = await call(http, srv, "PUT", "/big.bin", body)
        assert status == 200 and model["path"] == "big.bin", model
        if chunk != -1:
            assert (root / "big.bin").read_bytes() == b"the old one"  # no reader sees half an upload
    assert (root / "big.bin").read_bytes() == data
    assert not [p for p in root.iterdir() if p.name.startswith(".~")]

    piece = {"type": "file", "format": "base64", "content": base64.b64encode(b"x").decode()}
    status, error = await call(http, srv, "PUT", "/orphan.bin", {**piece, "chunk": 2})
    assert status == 409 and "send chunk 1 first" in error["message"]
    for bad in (0, -2, "1", True):
        status, error = await call(http, srv, "PUT", "/orphan.bin", {**piece, "chunk": bad})
        assert status == 400 and "chunk must be" in error["message"], bad
    status, error = await call(http, srv, "PUT", "/n.ipynb", {"type": "notebook", "content": NOTEBOOK, "chunk": 1})
    assert status == 400 and "Only files" in error["message"]
    assert not (root / "orphan.bin").exists()
