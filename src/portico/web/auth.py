"""Token authentication, the browser's login cookie with its XSRF check, the WebSocket Origin
check and CORS: middleware, applied once.

A client authenticates with the token (an `Authorization: token ...` header or `?token=`), or, in
a browser, with the login cookie the page sets once it has seen the token.  A cookie travels
with every request the browser makes, a forged cross-site one too, so a cookie-authenticated
request that changes state must also carry the `_xsrf` cookie's value in an X-XSRFToken header
(the double-submit check @jupyterlab/services performs by itself), and a cookie-authenticated
WebSocket must come from an allowed Origin.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from urllib.parse import urlencode, urlsplit

from aiohttp import hdrs, web

from ..settings import Settings
from ..errors import Forbidden, Unauthorized
from .errors import Handler

log = logging.getLogger("portico")

XSRF_COOKIE = "_xsrf"  # the name @jupyterlab/services reads to send X-XSRFToken
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def new_token() -> str:
    return secrets.token_hex(24)


class Guard:
    """Decides who gets in: the token, the Origin of WebSocket upgrades, CORS."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._token = settings.token.encode()
        self._origin_pat = re.compile(settings.allow_origin_pat) if settings.allow_origin_pat else None
        self.open_paths = {settings.base_url + "metrics"} if settings.metrics_public else set()
        self.open_prefixes: tuple[str, ...] = ()
        # The cookie's name and value derive from the token: another Portico on this host (cookies
        # ignore ports) keeps its own cookie, and a new token logs every browser out.
        digest = hashlib.sha256(self._token).hexdigest()
        self.cookie_name = "portico-login-" + digest[:12]
        self._cookie_value = hmac.new(self._token, b"portico browser login", hashlib.sha256).hexdigest()
        self.login_path = settings.base_url + "login"
        self.page_paths: set[str] = set()  # GETs that send a browser without a login to the login page
        self.page_prefixes: tuple[str, ...] = ()
        # Proxied apps check their own forms, as jupyter-server-proxy leaves them to; the login
        # cookie's SameSite=Lax keeps other sites' POSTs from carrying it there.
        self.xsrf_exempt_prefixes: tuple[str, ...] = ()

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

    def cookie_ok(self, request: web.Request) -> bool:
        presented = request.cookies.get(self.cookie_name)
        return presented is not None and hmac.compare_digest(presented.encode(), self._cookie_value.encode())

    def token_is(self, candidate: str) -> bool:
        return hmac.compare_digest(candidate.encode(), self._token)

    def set_login_cookies(self, request: web.Request, response: web.StreamResponse) -> None:
        secure = request.secure
        path = self.settings.base_url
        response.set_cookie(self.cookie_name, self._cookie_value, path=path, httponly=True, samesite="Lax", secure=secure)
        if not request.cookies.get(XSRF_COOKIE):
            response.set_cookie(XSRF_COOKIE, secrets.token_urlsafe(24), path=path, samesite="Lax", secure=secure)

    def clear_login_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.cookie_name, path=self.settings.base_url)

    @staticmethod
    def xsrf_ok(request: web.Request) -> bool:
        cookie = request.cookies.get(XSRF_COOKIE, "")
        header = request.headers.get("X-XSRFToken", "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), header.encode())

    def is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(self.open_prefixes)

    def is_page(self, path: str) -> bool:
        return path in self.page_paths or path.startswith(self.page_prefixes)

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
        websocket = request.headers.get(hdrs.UPGRADE, "").lower() == "websocket"
        origin = request.headers.get(hdrs.ORIGIN)
        if self.is_open(request.path) or self.token_ok(request):
            pass
        elif self.cookie_ok(request):
            if websocket and origin is None:
                raise Forbidden("A WebSocket authenticated by the login cookie must come from a page (no Origin header).")
            if (not websocket and request.method not in SAFE_METHODS and not self.xsrf_ok(request)
                    and not request.path.startswith(self.xsrf_exempt_prefixes)):
                raise Forbidden("XSRF check failed: a request authenticated by the login cookie must send the _xsrf "
                                "cookie's value in an X-XSRFToken header.", "XSRF Check Failed")
        elif request.method in ("GET", "HEAD") and self.is_page(request.path) and not websocket:
            target = request.rel_url.path_qs
            raise web.HTTPFound(self.login_path + "?" + urlencode({"next": target}))
        else:
            raise Unauthorized(
                "A valid token is required: send 'Authorization: token <token>' or add ?token=<token> to the URL.")
        if websocket:
            if origin is not None and not self.origin_allowed(origin, request.host):
                log.warning("refused a WebSocket from origin %s", origin)
                raise Forbidden(
                    f"WebSocket from origin {origin} refused; allow it with the option allow_origin or allow_origin_pat.")
        return await handler(request)
