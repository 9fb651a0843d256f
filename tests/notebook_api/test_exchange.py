"""The response rules and ResponseInfo's checks, on outputs as a kernel sends them."""

from __future__ import annotations

import base64
import json

import pytest

from portico.errors import CellFailed
from portico.notebook_api.exchange import Outputs, body, cell_error, request_code, response_info

PNG = base64.b64encode(b"\x89PNG fake bytes").decode()


def outputs(*messages: tuple[str, dict[str, object]]) -> Outputs:
    out = Outputs()
    for msg_type, content in messages:
        out.take(msg_type, content)
    return out


def test_stdout_is_the_body_and_stderr_is_ignored() -> None:
    out = outputs(
        ("stream", {"name": "stdout", "text": "a"}),
        ("stream", {"name": "stderr", "text": "x"}),
        ("stream", {"name": "stdout", "text": "b"}),
        ("execute_result", {"data": {"text/plain": "1"}}),
    )
    assert body(out, None) == (b"ab", "text/plain; charset=utf-8")
    assert body(out, "text/csv") == (b"ab", "text/csv")


def test_without_stdout_the_execute_result_bundle_as_json() -> None:
    out = outputs(("execute_result", {"data": {"text/plain": "1", "text/html": "<b>1</b>"}}))
    assert body(out, None) == (
        json.dumps({"text/plain": "1", "text/html": "<b>1</b>"}, separators=(",", ":")).encode(),
        "application/json",
    )
    assert body(out, "text/html") == (b"<b>1</b>", "text/html")  # ResponseInfo picks a representation


def test_rich_displays_become_the_body() -> None:
    png = outputs(("display_data", {"data": {"image/png": PNG, "text/plain": "<Image>"}}))
    assert body(png, None) == (b"\x89PNG fake bytes", "image/png")
    html = outputs(("display_data", {"data": {"text/html": "<p>hi</p>", "text/plain": "hi"}}))
    assert body(html, None) == (b"<p>hi</p>", "text/html; charset=utf-8")
    pdf = outputs(("execute_result", {"data": {"application/pdf": base64.b64encode(b"%PDF").decode()}}))
    assert body(pdf, None) == (b"%PDF", "application/pdf")
    svg = outputs(("display_data", {"data": {"image/svg+xml": ["<svg>", "</svg>"]}}))
    assert body(svg, None) == (b"<svg></svg>", "image/svg+xml; charset=utf-8")
    assert body(outputs(), None) == (b"", "text/plain; charset=utf-8")


def test_response_info_accepts_status_and_headers() -> None:
    out = outputs(("stream", {"name": "stdout", "text": '{"status": 201, "headers": {"ETag": "\\"1\\"", "X-N": 2}}\n'}))
    assert response_info(out, "GET /a") == (201, {"ETag": '"1"', "X-N": "2"})
    assert response_info(outputs(("stream", {"name": "stdout", "text": "{}"})), "GET /a") == (200, {})


@pytest.mark.parametrize(
    "printed, problem",
    [
        ("", "must print one JSON object"),
        ("status 201", "must print one JSON object"),
        ("[1]", "printed list JSON; expected an object"),
        ('{"status": "201"}', "status must be a whole number"),
        ('{"status": 99}', "status must be a whole number"),
        ('{"headers": ["a"]}', "headers must be an object"),
        ('{"headers": {"A": null}}', "headers must be an object"),
        ('{"headers": {"A": "x\\r\\nInjected: 1"}}', "line break"),
    ],
)
def test_malformed_response_info_says_what_is_wrong(printed: str, problem: str) -> None:
    with pytest.raises(CellFailed, match="ResponseInfo for GET /a") as e:
        response_info(outputs(("stream", {"name": "stdout", "text": printed})), "GET /a")
    assert problem in e.value.message


def test_a_failing_response_info_or_cell() -> None:
    failing = outputs(("error", {"ename": "KeyError", "evalue": "'x'", "traceback": ["tb"]}))
    with pytest.raises(CellFailed, match="raised KeyError: 'x'"):
        response_info(failing, "GET /a")
    quiet, loud = cell_error(failing, "GET /a", False), cell_error(failing, "GET /a", True)
    assert quiet.status == 500 and "traceback" not in quiet.extra and loud.extra["traceback"] == ["tb"]


def test_request_code_per_language() -> None:
    bundle = {"body": "é\"'\n\u2028😀", "args": {}, "path": {}, "headers": {}}
    code = request_code(bundle, "python")
    assert code.startswith("REQUEST = ")
    namespace: dict[str, object] = {}
    exec(code, namespace)
    assert json.loads(str(namespace["REQUEST"])) == bundle
    broken = {"body": "", "args": {}, "path": {}, "headers": {"X-Bytes": "a\udcff"}}
    namespace = {}
    exec(request_code(broken, "python"), namespace)
    assert json.loads(str(namespace["REQUEST"]))["headers"]["X-Bytes"] == "a\ufffd\ufffd\ufffd"
    assert request_code(bundle, "perl").startswith("my $REQUEST = ")
    assert request_code(bundle, "bash").startswith("REQUEST=")
