"""The notebook API's descriptions: valid documents, and true under property-based testing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate

from portico_testing import LocalServer, Server, schemathesis, serving, write_notebook

SAMPLE = [
    "import json\nITEMS = {}",
    "# GET /hello/:name\nprint('hello', json.loads(REQUEST)['path']['name'])",
    "# GET /items\nprint(json.dumps(sorted(ITEMS)))",
    "# ResponseInfo GET /items\nprint(json.dumps({'headers': {'Content-Type': 'application/json'}}))",
    "# POST /items\nreq = json.loads(REQUEST)\nITEMS[str(len(ITEMS))] = req['body']\nprint(len(ITEMS) - 1)",
    "# ResponseInfo POST /items\nprint(json.dumps({'status': 201}))",
    "# PUT /items/:id\nreq = json.loads(REQUEST)\nITEMS[req['path']['id']] = req['body']",
    "# DELETE /items/:id\nITEMS.pop(json.loads(REQUEST)['path']['id'], None)",
    "# PATCH /items/:id/name\nprint('patched')",
    "# HEAD /items/:id\npass",
]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[LocalServer]:
    async with serving(notebook=[f"/svc={write_notebook(tmp_path / 'sample.ipynb', SAMPLE)}"]) as srv:
        yield srv


async def spec(http: aiohttp.ClientSession, server: Server, name: str) -> dict[str, object]:
    async with http.get(f"{server.url}svc/_api/spec/{name}", headers=server.headers) as r:
        assert r.status == 200
        document: dict[str, object] = await r.json()
        return document


async def test_both_documents_validate(http: aiohttp.ClientSession, server: Server) -> None:
    openapi, swagger = await spec(http, server, "openapi.json"), await spec(http, server, "swagger.json")
    validate(openapi)  # type: ignore[arg-type]
    validate(swagger)  # type: ignore[arg-type]
    assert openapi["servers"] == [{"url": "/svc"}] and swagger["basePath"] == "/svc"
    assert (
        set(openapi["paths"])
        == set(swagger["paths"])
        == {  # type: ignore[call-overload]
            "/hello/{name}",
            "/items",
            "/items/{id}",
            "/items/{id}/name",
        }
    )
    hello = openapi["paths"]["/hello/{name}"]["get"]  # type: ignore[index]
    assert hello["parameters"] == [
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
    ]


async def test_schemathesis_finds_no_5xx_and_no_contradiction(server: LocalServer, tmp_path: Path) -> None:
    """schemathesis runs in a thread while the server answers in this test's loop."""
    url = server.url + "svc/_api/spec/openapi.json"
    result = await asyncio.to_thread(schemathesis, url, server.token, tmp_path, 25)
    assert result.returncode == 0, result.stdout[-6000:]
    log = "".join(server.stderr)
    assert '" 500 ' not in log and '" 502 ' not in log, log[-3000:]
    # aiohttp logs the requests its parser refuses (400); anything else would be a failure
    assert log.count("Traceback") == log.count("aiohttp.http_exceptions.BadHttpMessage"), log[-6000:]


async def test_the_swagger_variant_serves_its_own_document(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    document = {
        "swagger": "2.0",
        "info": {"title": "Pets", "version": "1"},
        "paths": {
            "/pets/{id}": {
                "get": {
                    "operationId": "getPet",
                    "responses": {"200": {"description": "a pet"}},
                    "parameters": [{"name": "id", "in": "path", "required": True, "type": "string"}],
                }
            }
        },
    }
    notebook = write_notebook(
        tmp_path / "pets.ipynb",
        [
            ("markdown", "```json\n" + json.dumps(document) + "\n```"),
            "import json",
            "# operationId: getPet\nprint('pet', json.loads(REQUEST)['path']['id'])",
            "# ResponseInfo operationId: getPet\nprint(json.dumps({'status': 200, 'headers': {'X-Pet': 'yes'}}))",
        ],
    )
    async with serving(notebook=[notebook]) as server:
        async with http.get(server.url + "pets/7", headers=server.headers) as r:
            assert await r.read() == b"pet 7\n" and r.headers["X-Pet"] == "yes"
        async with http.get(server.url + "_api/spec/swagger.json", headers=server.headers) as r:
            assert json.loads(await r.read()) == document


def test_operation_ids_are_unique_whatever_the_paths(tmp_path: Path) -> None:
    """A literal segment, a parameter and a path that reads like the parameter's id all differ."""
    from portico.notebook_api.openapi import operation_ids
    from portico.notebook_api.parse import COMMENT_PREFIXES, load

    path = write_notebook(
        tmp_path / "api.ipynb",
        ["# GET /hello/person\n1", "# GET /hello/:person\n1", "# GET /hello/by/person\n1", "# GET /hello/by_person\n1"],
    )
    api = load(str(path), kernel_name="", installed={"python3": "python"}, prefixes=COMMENT_PREFIXES)
    ids = operation_ids(api.routes)
    assert len(set(ids)) == 4 and ids[:2] == ["get_hello_person", "get_hello_by_person"]
