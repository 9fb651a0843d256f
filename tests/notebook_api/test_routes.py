"""A notebook in Kernel Gateway's documented style, served by a real Portico on a real kernel."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import aiohttp
import pytest
from openapi_spec_validator import validate

from portico_testing import Server, readme_example, run_session, start_server, write_notebook


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG image (RGB, every pixel a different colour)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(v for x in range(width) for v in (x * 80, y * 120, 200)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


PNG = png()
CELLS = [
    "import json\nimport sys\nPEOPLE = {}\nGREETING = 'hello'",
    # Kernel Gateway's api_intro pattern: a demo cell skipped when served (it sets KERNEL_GATEWAY=1)
    "import os\nif not os.environ.get('KERNEL_GATEWAY'):\n    import a_module_only_the_demo_needs",
    "# GET /served\nprint(os.environ.get('KERNEL_GATEWAY'))",
    '# GET /hello/world\nprint("hello world")',
    # Kernel Gateway's own test notebooks: text after the path is a comment (Portico warns at start-up)
    "# GET /fakeprint 'I am not a real lang!'\nprint('fake')",
    "# GET /hello/person\nreq = json.loads(REQUEST)\nprint(GREETING, ', '.join(req['args']['person']))",
    "# GET /hello/:name\nreq = json.loads(REQUEST)\nprint(GREETING, req['path']['name'])",
    "# GET /people\nprint(json.dumps(sorted(PEOPLE)))",
    "# ResponseInfo GET /people\nprint(json.dumps({'headers': {'Content-Type': 'application/json'}}))",
    "# POST /people\nreq = json.loads(REQUEST)\nperson = req['body']\nPEOPLE[person['id']] = person\n"
    "print(json.dumps(person))",
    "# ResponseInfo POST /people\nprint(json.dumps({'status': 201, 'headers': {'Content-Type': 'application/json',"
    " 'ETag': '\"%d\"' % len(PEOPLE)}}))",
    "# PUT /people/:id\nreq = json.loads(REQUEST)\nPEOPLE[req['path']['id']] = req['body']\nprint('stored')",
    "# DELETE /people/:id\nreq = json.loads(REQUEST)\nprint(PEOPLE.pop(req['path']['id'], None) is not None)",
    "# POST /echo\nprint(json.dumps(json.loads(REQUEST)))",
    "# GET /echo\nprint(json.dumps(json.loads(REQUEST)))",
    "# GET /stderr\nprint('to stderr', file=sys.stderr)\nprint('to stdout')",
    "# GET /joined\nprint('one')",
    "# GET /joined\nprint('two')",
    "# GET /error\nraise ValueError('no such thing')",
    "# GET /result\n{'answer': 42}",
    "# HEAD /exists\nprint('ignored body')",
    "# ResponseInfo HEAD /exists\nprint(json.dumps({'headers': {'X-Exists': 'yes'}}))",
    "# GET /bad-info\nprint('body')",
    "# ResponseInfo GET /bad-info\nprint('status: 201')",
    "# GET /png\nimport base64\nfrom IPython.display import Image, display\n"
    f"display(Image(data=base64.b64decode('{__import__('base64').b64encode(PNG).decode()}')))",
    "# GET /html\nfrom IPython.display import HTML, display\ndisplay(HTML('<p>made in a kernel</p>'))",
    "# GET /info-raises\nprint('body')",
    "# ResponseInfo GET /info-raises\nraise KeyError('no info')",
]


@pytest.fixture(scope="module", params=["one execution", "three executions"])
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Server]:
    """Both ways a request runs: one execution (Python kernels) and Kernel Gateway's three (any language)."""
    root = tmp_path_factory.mktemp("nb")
    public = root / "static"
    public.mkdir()
    (public / "page.html").write_text("<p>static</p>")
    (public / ".hidden").write_text("not for the public")
    notebook = write_notebook(root / "api.ipynb", CELLS)
    srv = start_server(
        "--notebook",
        notebook,
        "--notebook-pool-max",
        "1",
        "--notebook-source",
        "--notebook-public-dir",
        str(public),
        "--notebook-one-execution",
        str(request.param == "one execution"),
    )
    yield srv
    srv.stop()


async def call(
    http: aiohttp.ClientSession, server: Server, method: str, path: str, **kw: object
) -> tuple[int, Mapping[str, str], bytes]:
    headers = {**server.headers, **kw.pop("headers", {})}  # type: ignore[dict-item]
    async with http.request(method, server.url + path.lstrip("/"), headers=headers, **kw) as r:  # type: ignore[arg-type]
        return r.status, r.headers, await r.read()


async def test_kernels_are_told_they_are_served_as_kernel_gateway_tells_them(
    http: aiohttp.ClientSession, server: Server
) -> None:
    """KERNEL_GATEWAY=1 is in the kernels' environment, so a demo cell that checks it is skipped
    and the notebook starts (without it, the import in that cell fails the start)."""
    status, _, body = await call(http, server, "GET", "/served")
    assert (status, body) == (200, b"1\n")


async def test_paths_query_arguments_and_priority(http: aiohttp.ClientSession, server: Server) -> None:
    assert (await call(http, server, "GET", "/hello/world"))[2] == b"hello world\n"
    status, headers, body = await call(http, server, "GET", "/hello/person?person=ann&person=bo")
    assert (status, body) == (200, b"hello ann, bo\n")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert (await call(http, server, "GET", "/hello/caf%C3%A9"))[2] == "hello café\n".encode()
    assert (await call(http, server, "GET", "/hello/a%2Fb"))[2] == b"hello a/b\n"
    assert (await call(http, server, "GET", "/hello/a/b"))[0] == 404


async def test_seeded_state_json_bodies_and_response_info(http: aiohttp.ClientSession, server: Server) -> None:
    status, headers, body = await call(http, server, "POST", "/people", json={"id": "ann", "age": 7})
    assert status == 201 and headers["ETag"] == '"1"' and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"id": "ann", "age": 7}
    status, _, body = await call(
        http,
        server,
        "PUT",
        "/people/bo",
        data='{"id": "bo"}',
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert (status, body) == (200, b"stored\n")
    status, headers, body = await call(http, server, "GET", "/people")
    assert (status, json.loads(body), headers["Content-Type"]) == (200, ["ann", "bo"], "application/json")
    assert (await call(http, server, "DELETE", "/people/ann"))[2] == b"True\n"
    assert (await call(http, server, "DELETE", "/people/ann"))[2] == b"False\n"


async def test_request_bundle(http: aiohttp.ClientSession, server: Server) -> None:
    _, _, body = await call(
        http,
        server,
        "POST",
        "/echo?a=1&a=2&b=",
        data="plain words",
        headers={"Content-Type": "text/plain", "x-custom-thing": "v"},
    )
    req = json.loads(body)
    assert req["body"] == "plain words" and req["args"] == {"a": ["1", "2"], "b": [""]} and req["path"] == {}
    assert req["headers"]["X-Custom-Thing"] == "v"  # names normalized as Tornado does
    assert "Authorization" not in req["headers"]  # Portico's token never reaches the kernel
    _, _, body = await call(
        http,
        server,
        "POST",
        f"/echo?token={server.token}&keep=1",
        data={"name": "x", "tags": ["a", "b"]},
        headers={"Authorization": ""},
    )
    req = json.loads(body)
    assert req["body"] == {"name": ["x"], "tags": ["a", "b"]} and req["args"] == {"keep": ["1"]}
    form = aiohttp.FormData()
    form.add_field("field", "1")
    form.add_field("upload", b"file text", filename="f.txt")
    _, _, body = await call(http, server, "POST", "/echo", data=form)
    assert json.loads(body)["body"] == {"field": ["1"], "upload": ["file text"]}
    _, _, body = await call(
        http, server, "POST", "/echo", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert json.loads(body)["body"] == "{not json"  # as text, like Kernel Gateway
    _, _, body = await call(http, server, "GET", "/echo")
    assert json.loads(body)["body"] == ""


async def test_outputs_errors_and_verbs(http: aiohttp.ClientSession, server: Server) -> None:
    assert (await call(http, server, "GET", "/stderr"))[2] == b"to stdout\n"
    assert (await call(http, server, "GET", "/joined"))[2] == b"one\ntwo\n"
    status, headers, body = await call(http, server, "GET", "/result")
    assert (status, headers["Content-Type"], json.loads(body)) == (
        200,
        "application/json",
        {"text/plain": "{'answer': 42}"},
    )
    status, _, body = await call(http, server, "GET", "/error")
    error = json.loads(body)
    assert status == 500 and error["message"] == "GET /error raised ValueError: no such thing"
    assert error["ename"] == "ValueError" and "traceback" not in error
    status, _, body = await call(http, server, "GET", "/bad-info")
    assert status == 500 and "ResponseInfo for GET /bad-info must print one JSON object" in json.loads(body)["message"]
    status, _, body = await call(http, server, "GET", "/info-raises")
    assert (
        status == 500 and json.loads(body)["message"] == "ResponseInfo for GET /info-raises raised KeyError: 'no info'"
    )
    status, headers, body = await call(http, server, "HEAD", "/exists")
    assert (status, headers["X-Exists"], body) == (200, "yes", b"")
    status, headers, body = await call(http, server, "PATCH", "/people")
    assert status == 405 and headers["Allow"] == "GET, POST" and json.loads(body)["reason"] == "Method Not Allowed"
    status, _, body = await call(http, server, "GET", "/nowhere")
    assert status == 404 and "No endpoint" in json.loads(body)["message"]


async def test_displayed_images_and_html_are_the_body(http: aiohttp.ClientSession, server: Server) -> None:
    status, headers, body = await call(http, server, "GET", "/png")
    assert (status, headers["Content-Type"], body) == (200, "image/png", PNG)
    status, headers, body = await call(http, server, "GET", "/html")
    assert (status, headers["Content-Type"], body) == (200, "text/html; charset=utf-8", b"<p>made in a kernel</p>")


async def test_the_token_guards_the_routes(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.get(server.url + "hello/world") as r:
        assert r.status == 401
    async with http.get(server.url + "api/kernels", headers=server.headers) as r:  # the kernels API is still there
        assert r.status == 200 and await r.json() == []  # and the notebook's kernels are not in it


async def test_source_public_and_specs(http: aiohttp.ClientSession, server: Server) -> None:
    status, headers, body = await call(http, server, "GET", "/_api/source")
    assert status == 200 and "".join(json.loads(body)["cells"][1]["source"]) == CELLS[1]
    assert (await call(http, server, "GET", "/public/page.html"))[2] == b"<p>static</p>"
    assert (await call(http, server, "GET", "/public/../api.ipynb"))[0] == 404
    for missing in (
        "/public/nothing.html",
        "/public/",
        "/public/sub/none.css",
        "/public/.hidden",
        "/public/%2e%2e/api.ipynb",
    ):  # every 404 of the static directory is Portico's JSON
        status, headers, body = await call(http, server, "GET", missing)
        assert status in (403, 404) and headers["Content-Type"].startswith("application/json"), (missing, status)
        assert json.loads(body)["message"]
    status, headers, _ = await call(http, server, "HEAD", "/public/page.html")
    assert status == 200 and headers["Content-Length"] == str(len(b"<p>static</p>"))
    _, _, body = await call(http, server, "GET", "/_api/spec/swagger.json")
    swagger = json.loads(body)
    validate(swagger)  # type: ignore[arg-type]
    assert swagger["swagger"] == "2.0" and "/hello/{name}" in swagger["paths"] and "/people/{id}" in swagger["paths"]
    assert swagger["paths"]["/hello/{name}"]["get"]["parameters"][0]["name"] == "name"
    _, _, body = await call(http, server, "GET", "/_api/spec/openapi.json")
    spec = json.loads(body)
    validate(spec)  # type: ignore[arg-type]
    assert set(spec["paths"]["/people/{id}"]) == {"put", "delete"}
    for document in (swagger, spec):  # OpenAPI requires unique operationIds: /hello/person vs /hello/:name
        ids = [op["operationId"] for methods in document["paths"].values() for op in methods.values()]
        assert len(ids) == len(set(ids)), sorted(ids)
    assert spec["paths"]["/hello/{name}"]["get"]["operationId"] == "get_hello_by_name"


def test_readme_notebook_example_runs() -> None:
    args, session = readme_example("## The notebook HTTP API")
    root = Path(__file__).resolve().parents[2]
    server = start_server(*(str(root / a) if a.endswith(".ipynb") else a for a in args.split()))
    try:
        run_session(server, session)
    finally:
        server.stop()


async def test_several_notebooks_each_under_its_prefix(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    root = write_notebook(tmp_path / "root.ipynb", ["# GET /who\nprint('root')", "# GET /shop/x\nprint('root shop')"])
    shop = write_notebook(tmp_path / "shop.ipynb", ["# GET /who\nprint('shop')"])
    stock = write_notebook(tmp_path / "stock.ipynb", ["# GET /who\nprint('stock')"])
    server = start_server("--notebook", f"{root},/shop={shop},/stock/v1={stock}")
    try:
        for path, expected in (("who", "root"), ("shop/who", "shop"), ("stock/v1/who", "stock")):
            async with http.get(server.url + path, headers=server.headers) as r:
                assert (r.status, await r.text()) == (200, expected + "\n"), path
        async with http.get(server.url + "shop/x", headers=server.headers) as r:
            assert r.status == 404  # /shop/ belongs to shop.ipynb
        async with http.get(server.url + "_api/source", headers=server.headers) as r:
            assert r.status == 404  # notebook_source is off
        async with http.get(server.url + "api/status", headers=server.headers) as r:
            assert [n["prefix"] for n in (await r.json())["notebooks"]] == ["/stock/v1/", "/shop/", "/"]
    finally:
        server.stop()
