"""The one error path: typed exceptions, mapped to one JSON body in one place.

    PorticoError (500)                      body: {"message": ..., "reason": ...}
    ├── BadRequest (400)                    malformed JSON, wrong types, bad values
    ├── Unauthorized (401)                  missing or wrong token
    ├── Forbidden (403)                     foreign Origin, path outside root_dir
    │   └── LimitReached (403)              max_kernels reached
    ├── NotFound (404)                      unknown kernel, session, kernelspec, path
    ├── Conflict (409)                      an id that already exists in another form
    ├── MethodNotAllowed (405)              a notebook API path without that verb
    ├── CellFailed (500)                    a notebook API cell raised, or ResponseInfo was malformed
    ├── BadGateway (502)                    a notebook API kernel died during the request
    ├── Unavailable (503)                   a kernel that cannot start or answer; a full queue
    └── GatewayTimeout (504)                a notebook API request over its timeout

aiohttp's own HTTP exceptions (413 for a body over max_body_size, 405, ...) get the same
body.  Anything else is a 500 whose body says only that the server failed; the traceback
goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

log = logging.getLogger("portico")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PorticoError(Exception):
    status = 500
    reason = "Internal Server Error"

    def __init__(self, message: str, reason: str | None = None, *, headers: dict[str, str] | None = None,
                 extra: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.headers = headers or {}
        self.extra = extra or {}  # more fields for the body (a traceback, when asked for)


class BadRequest(PorticoError):
    status, reason = 400, "Bad Request"


class Unauthorized(PorticoError):
    status, reason = 401, "Unauthorized"


class Forbidden(PorticoError):
    status, reason = 403, "Forbidden"


class LimitReached(Forbidden):
    reason = "Resource Limit"


class NotFound(PorticoError):
    status, reason = 404, "Not Found"


class Conflict(PorticoError):
    status, reason = 409, "Conflict"


class MethodNotAllowed(PorticoError):
    status, reason = 405, "Method Not Allowed"


class CellFailed(PorticoError):
    reason = "Cell Failed"


class BadGateway(PorticoError):
    status, reason = 502, "Bad Gateway"


class Unavailable(PorticoError):
    status, reason = 503, "Service Unavailable"


class GatewayTimeout(PorticoError):
    status, reason = 504, "Gateway Timeout"


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
