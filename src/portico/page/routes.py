"""The browser page: the launcher at the base URL, the notebook at notebooks/PATH, the login.

The page itself is a static bundle (web/, built by scripts/build-page into page/static/); these
routes serve it with the few settings it needs, and handle the login: a page URL carrying a
valid ?token= sets the login cookie and redirects to the same URL without the token, and a
browser without a login is sent to a form that asks for the token.  Pages get a strict
Content-Security-Policy, so no inline script runs even if a kernel's HTML output slipped past
the sanitizer.
"""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from .. import __version__
from ..errors import NotFound
from ..paths import confine
from ..settings import Settings
from ..web.auth import Guard

STATIC_DIR = Path(__file__).parent / "static"
ASSETS = ("app.js", "app.css")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'self'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
}


def _asset_version() -> str:
    digest = hashlib.sha256()
    for name in ASSETS:
        try:
            digest.update((STATIC_DIR / name).read_bytes())
        except OSError:
            return ""
    return digest.hexdigest()[:16]


def _script_json(data: object) -> str:
    return json.dumps(data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _redirect(location: str, status: int = 302) -> web.Response:
    return web.Response(status=status, headers={"Location": location, "Cache-Control": "no-store"})


LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portico: log in</title><link rel="icon" href="data:,">
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; display: grid; place-items: center; min-height: 90vh; margin: 0;
       color: #1d2330; }}
form {{ border: 1px solid #ccd; border-radius: 8px; padding: 1.5rem 2rem; max-width: 26rem; }}
h1 {{ font-size: 1.3rem; margin: 0 0 .5rem; }}
input {{ font: inherit; width: 100%; box-sizing: border-box; padding: .4rem; margin: .3rem 0 1rem; }}
button {{ font: inherit; padding: .4rem 1.2rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><main><form method="post" action="{action}">
<h1>Portico</h1>
<p>This server needs its token. Portico printed a URL with the token when it started; open that URL,
or paste the token here.</p>
{error}<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" autofocus required>
<input type="hidden" name="next" value="{next}">
<button type="submit">Log in</button>
</form></main></body></html>
"""


class PageRoutes:
    def __init__(self, settings: Settings, guard: Guard) -> None:
        self.settings = settings
        self.guard = guard
        b = settings.base_url
        self.static_url = b + "_page/"
        guard.open_paths |= {b + "login", b + "logout"}
        guard.open_prefixes += (self.static_url,)
        guard.page_paths.add(b)
        guard.page_prefixes += (b + "notebooks/",)
        self.version = _asset_version()

    def add_to(self, router: web.UrlDispatcher) -> None:
        b = self.settings.base_url
        router.add_route("GET", b, self.launcher)
        router.add_route("GET", b + "notebooks/{path:.*}", self.notebook)
        router.add_route("GET", b + "login", self.login_form)
        router.add_route("POST", b + "login", self.login)
        router.add_route("GET", b + "logout", self.logout)
        router.add_route("GET", b + "_page/{file}", self.asset)

    # pages ---------------------------------------------------------------------------------
    async def launcher(self, request: web.Request) -> web.StreamResponse:
        return self._page(request, {"view": "launcher"})

    async def notebook(self, request: web.Request) -> web.StreamResponse:
        return self._page(request, {"view": "notebook", "path": request.match_info["path"]})

    def _page(self, request: web.Request, config: dict[str, object]) -> web.StreamResponse:
        if "token" in request.query:  # the start-up URL: log in with a cookie, and take the token off the address bar
            query = {k: v for k, v in request.query.items() if k != "token"}
            response = _redirect(request.rel_url.raw_path + ("?" + urlencode(query) if query else ""))
            self.guard.set_login_cookies(request, response)
            return response
        if not self.version:
            return web.Response(
                status=503,
                content_type="text/html",
                headers=PAGE_HEADERS,
                text=(
                    "<!doctype html><title>Portico</title><p>The page's assets are not built: run "
                    "<code>scripts/setup</code> "
                    "(or <code>scripts/build-page</code>) in Portico's checkout.</p>"
                ),
            )
        config = {
            **config,
            "baseUrl": self.settings.base_url,
            "version": __version__,
            "auth": "none" if self.settings.disable_auth else "cookie",
            "autosave": self.settings.autosave_interval,
        }
        v = self.version
        body = (
            '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Portico</title>'
            '<link rel="icon" href="data:,">'
            f'<link rel="stylesheet" href="{self.static_url}app.css?v={v}">'
            f'<script id="portico-config" type="application/json">{_script_json(config)}</script>'
            f'</head><body><div id="app"></div><script type="module" src="{self.static_url}app.js?v={v}"></script>'
            "</body></html>\n"
        )
        response = web.Response(text=body, content_type="text/html", headers=PAGE_HEADERS)
        if not self.settings.disable_auth:
            self.guard.set_login_cookies(request, response)  # renews the _xsrf cookie if the browser lost it
        return response

    # login ---------------------------------------------------------------------------------
    def _safe_next(self, target: str) -> str:
        b = self.settings.base_url
        if not target.startswith(b) or target.startswith("//") or "\\" in target:
            return b
        return target

    def _login_page(self, next_url: str, error: str = "", status: int = 200) -> web.Response:
        text = LOGIN_PAGE.format(
            action=html.escape(self.settings.base_url + "login"),
            next=html.escape(next_url),
            error=f'<p class="error" role="alert">{html.escape(error)}</p>' if error else "",
        )
        return web.Response(text=text, status=status, content_type="text/html", headers=PAGE_HEADERS)

    async def login_form(self, request: web.Request) -> web.Response:
        return self._login_page(self._safe_next(request.query.get("next", "")))

    async def login(self, request: web.Request) -> web.StreamResponse:
        try:
            form = await request.post()
        except ValueError:  # a multipart body without a boundary, say
            return self._login_page(self.settings.base_url, "The form could not be read.", 400)
        token, target = str(form.get("token", "")), self._safe_next(str(form.get("next", "")))
        if not self.settings.disable_auth and not self.guard.token_is(token.strip()):
            return self._login_page(target, "That token is not this server's.", 401)
        response = _redirect(target, 303)
        self.guard.set_login_cookies(request, response)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = _redirect(self.settings.base_url + "login")
        self.guard.clear_login_cookie(response)
        return response

    # assets --------------------------------------------------------------------------------
    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["file"]
        path = confine(STATIC_DIR.resolve(), name, field="asset") if "/" not in name else None
        if path is None or not path.is_file():
            raise NotFound(f"No page asset {name}.")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})
