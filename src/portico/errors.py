"""The one error tree: what went wrong, with the HTTP status and the WebSocket close code it maps to.

    PorticoError (500, close 1011)          body: {"message": ..., "reason": ...}
    ├── SettingsError (500)                 a bad option or notebook: stops the start, names what to fix
    ├── BadRequest (400)                    malformed JSON, wrong types, bad values
    ├── Unauthorized (401)                  missing or wrong token
    ├── Forbidden (403)                     foreign Origin, path outside root_dir
    │   └── LimitReached (403)              max_kernels reached
    ├── NotFound (404)                      unknown kernel, session, kernelspec, path
    ├── MethodNotAllowed (405)              a notebook API path without that verb
    ├── Conflict (409)                      an id that already exists in another form
    ├── CellFailed (500)                    a notebook API cell raised, or ResponseInfo was malformed
    ├── BadGateway (502)                    a proxied server or a notebook API kernel failed us
    ├── Unavailable (503, close 1013)       a kernel that cannot start or answer; a full queue
    └── GatewayTimeout (504)                a notebook API request or a proxied server over its time

Every WebSocket close code Portico sends is in `Close`.  Nothing here knows HTTP's
machinery: `web.errors` maps these to the one JSON body, so every package can raise them
without importing the HTTP layer.
"""

from __future__ import annotations

from enum import IntEnum


class Close(IntEnum):
    """WebSocket close codes (RFC 6455 section 7.4 and Portico's own in the 4000s)."""

    NORMAL = 1000  # the other side closed, or a proxied backend ended cleanly
    GOING_AWAY = 1001  # the kernel was shut down or culled; a proxied client left without a close frame
    INTERNAL = 1011  # the server failed; a proxied backend ended without a close frame
    TRY_AGAIN = 1013  # unavailable for now
    REPLACED = 4000  # a newer connection with the same session_id took over
    TOO_SLOW = 4008  # the client fell behind what Portico keeps for it: reconnect to replay


class PorticoError(Exception):
    status = 500
    reason = "Internal Server Error"
    close_code = Close.INTERNAL

    def __init__(
        self,
        message: str,
        reason: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if status is not None:  # the same kind of failure with another status (a backend's own refusal)
            self.status = status
        self.headers = headers or {}
        self.extra = extra or {}  # more fields for the body (a traceback, when asked for)


class SettingsError(PorticoError, ValueError):
    """A bad option or notebook: the message names the option (or file and cell) and what is expected."""

    reason = "Bad Settings"


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


class MethodNotAllowed(PorticoError):
    status, reason = 405, "Method Not Allowed"


class Conflict(PorticoError):
    status, reason = 409, "Conflict"


class CellFailed(PorticoError):
    reason = "Cell Failed"


class BadGateway(PorticoError):
    status, reason = 502, "Bad Gateway"


class Unavailable(PorticoError):
    status, reason, close_code = 503, "Service Unavailable", Close.TRY_AGAIN


class GatewayTimeout(PorticoError):
    status, reason = 504, "Gateway Timeout"


def described(e: BaseException) -> str:
    """An exception as one line for a message: its text, or its type when it has none (a TimeoutError)."""
    text = str(e)
    if isinstance(e, TimeoutError) and not text:
        return "timed out"
    return text or type(e).__name__
