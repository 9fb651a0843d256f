"""The browser's login: ?token= on a page sets a cookie; cookie requests that change state need the XSRF header."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from yarl import URL

from portico_testing import Server, serving


@pytest.fixture
async def browser() -> AsyncIterator[aiohttp.ClientSession]:
    """A client that keeps cookies, as a browser does, and sends no token header."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def login(browser: aiohttp.ClientSession, server: Server) -> str:
    async with browser.get(server.url + f"?token={server.token}&x=1", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/?x=1"  # the token leaves the address bar
        set_cookies = r.headers.getall("Set-Cookie")
    login_cookie = next(c for c in set_cookies if c.startswith("portico-login-"))
    assert "HttpOnly" in login_cookie and "SameSite=Lax" in login_cookie and server.token not in login_cookie
    xsrf = browser.cookie_jar.filter_cookies(URL(server.url))["_xsrf"].value
    assert xsrf
    return xsrf


async def test_a_page_without_a_login_goes_to_the_login_form(browser: aiohttp.ClientSession, server: Server) -> None:
    for path in ("", "notebooks/a.ipynb"):
        async with browser.get(server.url + path, allow_redirects=False) as r:
            assert r.status == 302 and URL(r.headers["Location"]).query["next"] == "/" + path
    async with browser.get(server.url + "notebooks/a.ipynb") as r:
        page = await r.text()
        assert r.status == 200 and 'name="token"' in page and "<label" in page
        assert 'value="/notebooks/a.ipynb"' in page
        assert "python3" not in page and "kernel" not in page.lower()  # no data before the login
    async with browser.get(server.url + "api/kernels") as r:
        assert r.status == 401  # APIs answer 401, they do not redirect


async def test_token_url_sets_cookies_that_authenticate(browser: aiohttp.ClientSession, server: Server) -> None:
    xsrf = await login(browser, server)
    async with browser.get(server.url) as r:
        assert r.status == 200 and 'id="portico-config"' in await r.text()
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    async with browser.get(server.url + "api/kernelspecs") as r:
        assert r.status == 200
    async with browser.post(server.url + "api/kernels", json={}) as r:
        body = await r.json()
        assert r.status == 403 and body["reason"] == "XSRF Check Failed"
    async with browser.post(server.url + "api/kernels", json={}, headers={"X-XSRFToken": "forged"}) as r:
        assert r.status == 403
    async with browser.post(server.url + "api/kernels", json={}, headers={"X-XSRFToken": xsrf}) as r:
        assert r.status == 201
        kernel = await r.json()
    # a cookie-authenticated WebSocket must come from a page: an allowed Origin, and an Origin at all
    ws_url = server.ws_url + f"api/kernels/{kernel['id']}/channels"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(ws_url)
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await browser.ws_connect(ws_url, origin="http://evil.example")
    assert refused.value.status == 403
    host = server.url.split("/")[2]
    async with browser.ws_connect(ws_url, origin=f"http://{host}") as ws:
        assert not ws.closed
    async with browser.delete(server.url + f"api/kernels/{kernel['id']}", headers={"X-XSRFToken": xsrf}) as r:
        assert r.status == 204


async def test_login_form_and_logout(browser: aiohttp.ClientSession, server: Server) -> None:
    async with browser.post(server.url + "login", data={"token": "wrong", "next": "/"}) as r:
        assert r.status == 401 and "not this server" in await r.text()
    async with browser.get(server.url + "api/kernels") as r:
        assert r.status == 401
    for target, expected in (("/notebooks/x.ipynb", "/notebooks/x.ipynb"), ("//evil.example/", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):
        async with browser.post(server.url + "login", data={"token": server.token, "next": target},
                                allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == expected, target
    async with browser.get(server.url + "api/kernels") as r:
        assert r.status == 200
    async with browser.get(server.url + "logout", allow_redirects=False) as r:
        assert r.status == 302
    async with browser.get(server.url + "api/kernels") as r:
        assert r.status == 401


async def test_a_cookie_is_no_good_on_a_server_with_another_token(browser: aiohttp.ClientSession, server: Server) -> None:
    await login(browser, server)
    async with serving(token="another-token") as other:
        cookie = "; ".join(f"{name}={c.value}" for name, c in browser.cookie_jar.filter_cookies(URL(server.url)).items())
        async with aiohttp.ClientSession() as plain:
            async with plain.get(other.url + "api/kernels", headers={"Cookie": cookie}) as r:
                assert r.status == 401


async def test_page_assets_need_no_token_and_stay_in_their_directory(http: aiohttp.ClientSession, server: Server) -> None:
    async with http.get(server.url + "_page/app.js") as r:
        assert r.status == 200 and r.content_type in ("application/javascript", "text/javascript")
    async with http.get(server.url + "_page/app.js", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.status == 200 and r.headers.get("Content-Encoding") == "gzip"
    for path in ("_page/.sources", "_page/nothing.js", "_page/%2E%2E%2Froutes.py"):
        async with http.get(server.url + path) as r:
            assert r.status == 404, path
