"""An HTTP request in, Kernel Gateway's REQUEST out; a cell's outputs in, an HTTP response out.

REQUEST (a JSON string, as in Kernel Gateway): {"body", "args", "path", "headers"}
  body     JSON for any application/json (or +json) content type, charset and all; form and
           multipart fields as {name: [values]} (file parts as their text); else the text
  args     the query as {name: [values]}
  path     the route's :name parameters as strings
  headers  {Name: value}, repeated headers as lists; Portico's own token left out

The response, first rule that applies:
  1. the cell raised                          -> 500 {"message": "Name: value", ...}
  2. the cell printed to stdout               -> that text (text/plain unless ResponseInfo says)
  3. ResponseInfo's Content-Type is a MIME type one of the cell's displays holds
                                              -> that representation
  4. a display_data holding a rich type, or an execute_result holding a binary or SVG one
     (RICH below, in that order)              -> that representation with its type
  5. an execute_result                        -> its MIME bundle as JSON (Kernel Gateway)
  6. nothing                                  -> an empty body
ResponseInfo's status and headers apply to every one but the first.
"""

from __future__ import annotations

import ast
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest, CellFailed

JSON_TYPES = ("application/json",)
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
RICH = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "image/svg+xml", "text/html")
RICH_RESULT = RICH[:-1]  # an execute_result's text/html (a DataFrame's) stays Kernel Gateway's JSON bundle


@dataclass
class Outputs:
    """What one execute_request produced on iopub."""

    stdout: list[str] = field(default_factory=list)
    displays: list[dict[str, Any]] = field(default_factory=list)  # display_data bundles
    result: dict[str, Any] | None = None  # execute_result bundle
    error: dict[str, Any] | None = None
    expressions: dict[str, Any] = field(default_factory=dict)  # the execute_reply's user_expressions

    def take(self, msg_type: str, content: dict[str, Any]) -> None:
        if msg_type == "stream":
            if content.get("name", "stdout") == "stdout":
                self.stdout.append(content.get("text", ""))
        elif msg_type == "execute_result":
            self.result = content.get("data") or {}
        elif msg_type == "display_data":
            self.displays.append(content.get("data") or {})
        elif msg_type == "error":
            self.error = content


# request ---------------------------------------------------------------------------------
async def request_bundle(request: web.Request, path: dict[str, str], token: str) -> dict[str, Any]:
    return {
        "body": await _body(request),
        "args": _multi(request.query, token),
        "path": path,
        "headers": _headers(request, token),
    }


def request_code(bundle: dict[str, Any], language: str) -> str:
    """The statement that sets REQUEST in the kernel's language (Kernel Gateway's forms).

    The literal keeps non-ASCII characters as they are: escaping them would write a character
    beyond the BMP as a surrogate pair, which a Python literal reads as two broken characters.
    """
    try:
        text = orjson.dumps(bundle).decode()
    except TypeError:  # a lone surrogate (undecodable bytes in a header): replaced, not fatal
        text = orjson.dumps(_without_surrogates(bundle)).decode()
    literal = json.dumps(text, ensure_ascii=False)
    if language == "perl":
        return f"my $REQUEST = {literal}"
    if language in ("bash", "sh"):
        return f"REQUEST={literal}"
    return f"REQUEST = {literal}"


def _without_surrogates(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    return value


async def _body(request: web.Request) -> Any:
    kind = request.content_type
    if kind in FORM_TYPES:
        try:
            fields = await request.post()
        except web.HTTPException:
            raise
        except Exception as e:
            raise BadRequest(f"The body is not valid {kind}: {e or type(e).__name__}.") from None
        out: dict[str, list[str]] = {}
        for name, value in fields.items():
            if isinstance(value, str):
                text = value
            elif isinstance(value, (bytes, bytearray)):
                text = value.decode("utf-8", "replace")
            else:  # a file part
                text = value.file.read().decode("utf-8", "replace")
            out.setdefault(name, []).append(text)
        return out
    raw = await request.read()
    if kind in JSON_TYPES or kind.endswith("+json"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # as text, like Kernel Gateway
    return raw.decode("utf-8", "replace")


def _multi(pairs: Any, token: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in pairs.items():
        if name == "token" and token and value == token:
            continue
        out.setdefault(name, []).append(value)
    return out


def _headers(request: web.Request, token: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in request.headers.items():
        if token and token in value and name.lower() == "authorization":
            continue
        name = "-".join(word.capitalize() for word in name.split("-"))  # as Tornado normalizes them
        if name in out:
            previous = out[name]
            out[name] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[name] = value
    return out


# Python kernels: one execute_request per HTTP request -------------------------------------
PYTHON_PRELUDE = '''def __portico_response_info(code, _io=__import__("io"), _cl=__import__("contextlib")):
    """Portico's notebook API: runs a ResponseInfo cell and returns what it printed."""
    buffer = _io.StringIO()
    with _cl.redirect_stdout(buffer):
        exec(code, globals())
    return buffer.getvalue()
'''
RESPONSE_INFO = "portico_response_info"


def python_step_code(code: str, bundle: dict[str, Any]) -> str:
    """The endpoint code with REQUEST set on its first line, in front of the annotation comment:
    one execution instead of two, and tracebacks keep the cell's line numbers."""
    return f"{request_code(bundle, 'python')}  {code}"


def python_expressions(response_code: str | None) -> dict[str, str]:
    """ResponseInfo as a user expression: the kernel runs it after the cell, in the same request,
    and only when the cell succeeded (as the kernel aborts a queued step after an error)."""
    return {RESPONSE_INFO: f"__portico_response_info({response_code!r})"} if response_code else {}


def printed_by_expression(outputs: Outputs, where: str) -> str:
    result = outputs.expressions.get(RESPONSE_INFO) or {}
    if result.get("status") != "ok":
        raise CellFailed(f"ResponseInfo for {where} raised {_error_text(result)}")
    try:
        return str(ast.literal_eval(result["data"]["text/plain"]))
    except (KeyError, ValueError, SyntaxError):
        raise CellFailed(f"ResponseInfo for {where}: the kernel returned no readable output") from None


# response ---------------------------------------------------------------------------------
def response_info(outputs: Outputs, where: str) -> tuple[int, dict[str, str]]:
    """ResponseInfo's printed {"status": int, "headers": {...}}; anything else is a 500 saying why."""
    if outputs.error is not None:
        raise CellFailed(f"ResponseInfo for {where} raised {_error_text(outputs.error)}")
    return parse_response_info("".join(outputs.stdout), where)


def parse_response_info(printed: str, where: str) -> tuple[int, dict[str, str]]:
    text = printed.strip()
    try:
        info = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise CellFailed(
            f"ResponseInfo for {where} must print one JSON object like "
            f'{{"status": 201, "headers": {{"Content-Type": "text/csv"}}}}; it printed {text[:200]!r}'
        ) from None
    if not isinstance(info, dict):
        raise CellFailed(f"ResponseInfo for {where} printed {type(info).__name__} JSON; expected an object")
    status = info.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise CellFailed(f"ResponseInfo for {where}: status must be a whole number from 200 to 599, got {status!r}")
    headers = info.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in headers.values()
    ):
        raise CellFailed(f"ResponseInfo for {where}: headers must be an object of names to strings or numbers")
    clean = {str(k): str(v) for k, v in headers.items()}
    if any("\n" in k + v or "\r" in k + v for k, v in clean.items()):
        raise CellFailed(f"ResponseInfo for {where}: a header name or value holds a line break")
    return status, clean


def cell_error(outputs: Outputs, where: str, debug: bool) -> CellFailed:
    assert outputs.error is not None
    extra: dict[str, object] = {"ename": outputs.error.get("ename"), "evalue": outputs.error.get("evalue")}
    if debug:
        extra["traceback"] = outputs.error.get("traceback", [])
    return CellFailed(f"{where} raised {_error_text(outputs.error)}", "Cell Error", extra=extra)


def _error_text(error: dict[str, Any]) -> str:
    return f"{error.get('ename', 'Error')}: {error.get('evalue', '')}"


def body(outputs: Outputs, content_type: str | None) -> tuple[bytes, str]:
    """The body and its content type, by the rules at the top of this module."""
    if outputs.stdout:
        return "".join(outputs.stdout).encode(), content_type or "text/plain; charset=utf-8"
    bundles = [*outputs.displays, *([outputs.result] if outputs.result is not None else [])]
    if content_type:
        wanted = content_type.split(";")[0].strip().lower()
        for bundle in bundles:
            if wanted in bundle:
                return _representation(wanted, bundle[wanted]), content_type
    for kinds, candidates in ((RICH, outputs.displays), (RICH_RESULT, bundles)):
        for kind in kinds:
            for bundle in candidates:
                if kind in bundle:
                    return _representation(kind, bundle[kind]), content_type or _with_charset(kind)
    if outputs.result is not None:
        return orjson.dumps(outputs.result), content_type or "application/json"
    return b"", content_type or "text/plain; charset=utf-8"


def _representation(kind: str, value: Any) -> bytes:
    """Jupyter's MIME bundle encoding: JSON types as JSON, text as text, binary as base64."""
    if kind == "application/json" or kind.endswith("+json"):
        return orjson.dumps(value)
    text = "".join(value) if isinstance(value, list) else str(value)
    if kind.startswith("text/") or kind == "image/svg+xml" or kind.endswith("+xml") or kind.endswith("javascript"):
        return text.encode()
    try:
        return base64.b64decode(text, validate=False)
    except ValueError:
        return text.encode()


def _with_charset(kind: str) -> str:
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("+xml") else kind
