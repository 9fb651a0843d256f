"""The one error path over HTTP: Portico's error tree (portico.errors) mapped to one JSON body.

    body: {"message": ..., "reason": ...}, with the error's status and headers

aiohttp's own HTTP exceptions (413 for a body over max_body_size, 405, ...) get the same
body.  Anything else is a 500 whose body says only that the server failed; the traceback
goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from ..errors import PorticoError

log = logging.getLogger("portico")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str, reason: str | None, extra: dict[str, object] | None = None) -> web.Response:
    body = orjson.dumps({"message": message, "reason": reason, **(extra or {})})
    return web.Response(status=status, body=body, content_type="application/json")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except PorticoError as e:
        response = json_error(e.status, e.message, e.reason, e.extra)
        response.headers.update(e.headers)
        return response
    except web.HTTPException as e:
        if e.status < 400:
            raise
        response = json_error(e.status, _http_message(e), e.reason)
        for name in ("Allow", "Retry-After"):
            if name in e.headers:
                response.headers[name] = e.headers[name]
        return response
    except Exception:
        log.exception("unhandled error serving %s %s", request.method, request.path)
        return json_error(500, "The server failed to handle this request; the error is in its log.", None)


def _http_message(e: web.HTTPException) -> str:
    if e.status == 413:
        return f"Request body too large ({e.text}); the limit is the option max_body_size."
    if e.status == 404:
        return "No such path."
    if e.status == 405:
        return f"Method not allowed here; allowed: {e.headers.get('Allow', '')}."
    return e.text or e.reason
