"""Token authentication, the WebSocket Origin check and CORS: middleware, applied once."""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from ..settings import Settings
from .errors import Forbidden, Handler, Unauthorized

log = logging.getLogger("portico")


def new_token() -> str:
    return secrets.token_hex(24)


class Guard:
    """Decides who gets in: the token, the Origin of WebSocket upgrades, CORS."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._token = settings.token.encode()
        self._origin_pat = re.compile(settings.allow_origin_pat) if settings.allow_origin_pat else None
        self.open_paths = {settings.base_url + "metrics"} if settings.metrics_public else set()

    # token -----------------------------------------------------------------------------
    def presented_token(self, request: web.Request) -> str | None:
        header = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("token", "bearer") and value.strip():
            return value.strip()
        return request.query.get("token")

    def token_ok(self, request: web.Request) -> bool:
        if self.settings.disable_auth:
            return True
        presented = self.presented_token(request)
        return presented is not None and hmac.compare_digest(presented.encode(), self._token)

    # origin ----------------------------------------------------------------------------
    def origin_allowed(self, origin: str, host: str | None) -> bool:
        if self.settings.allow_origin == "*" or origin == self.settings.allow_origin:
            return True
        if self._origin_pat is not None and self._origin_pat.fullmatch(origin):
            return True
        return host is not None and urlsplit(origin).netloc.lower() == host.lower()

    def cors_enabled(self) -> bool:
        return bool(self.settings.allow_origin or self._origin_pat)

    def cors_headers(self, origin: str) -> dict[str, str]:
        s = self.settings
        headers = {"Access-Control-Allow-Origin": "*" if s.allow_origin == "*" and not s.allow_credentials else origin}
        if headers["Access-Control-Allow-Origin"] != "*":
            headers["Vary"] = "Origin"
        if s.allow_credentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if s.expose_headers:
            headers["Access-Control-Expose-Headers"] = s.expose_headers
        return headers

    def preflight_headers(self, origin: str) -> dict[str, str]:
        s = self.settings
        headers = self.cors_headers(origin)
        headers["Access-Control-Allow-Methods"] = s.allow_methods
        headers["Access-Control-Allow-Headers"] = s.allow_headers
        if s.max_age:
            headers["Access-Control-Max-Age"] = str(s.max_age)
        return headers

    # middleware ------------------------------------------------------------------------
    @web.middleware
    async def cors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get(hdrs.ORIGIN)
        allowed = origin is not None and self.cors_enabled() and self.origin_allowed(origin, None)
        if request.method == hdrs.METH_OPTIONS:
            headers = self.preflight_headers(origin) if allowed and origin else {}
            return web.Response(status=204, headers=headers)
        response = await handler(request)
        if allowed and origin and not response.prepared:
            response.headers.update(self.cors_headers(origin))
        return response

    @web.middleware
    async def auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path not in self.open_paths and not self.token_ok(request):
            raise Unauthorized(
                "A valid token is required: send 'Authorization: token <token>' or add ?token=<token> to the URL.")
        if request.headers.get(hdrs.UPGRADE, "").lower() == "websocket":
            origin = request.headers.get(hdrs.ORIGIN)
            if origin is not None and not self.origin_allowed(origin, request.host):
                log.warning("refused a WebSocket from origin %s", origin)
                raise Forbidden(
                    f"WebSocket from origin {origin} refused; allow it with the option allow_origin or allow_origin_pat.")
        return await handler(request)
