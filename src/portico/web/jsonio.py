"""JSON request bodies and responses, the same way everywhere."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ..errors import BadRequest


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; an empty body is {}.  A body over max_body_size is a 413."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadRequest(f"Request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("Request body must be a JSON object.")
    return body


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")
