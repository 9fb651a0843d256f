"""The `portico` command: options in, a running server out, its URL with the token printed."""

from __future__ import annotations

import argparse
import asyncio
import logging
import resource
import signal
import ssl
import sys
from typing import Any, NoReturn

from aiohttp import web

from . import __version__
from . import settings as options
from .app import build_app
from .errors import SettingsError
from .logs import AccessLogger, configure
from .settings import Settings
from .web.auth import new_token

log = logging.getLogger("portico")
OPEN_FILES = 65536


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"portico: {message} (see portico --help)\n")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="portico", description="A fast gateway to Jupyter kernels.", argument_default=argparse.SUPPRESS
    )
    p.add_argument("--version", action="version", version=f"portico {__version__}")
    p.add_argument(
        "--help-options-markdown", action="store_true", help="print the options as the README's markdown table and exit"
    )
    for name, f in options.OPTIONS.items():
        kind = options.type_name(name)
        help_text = f"{f.metadata['help']} [env {options.env_var(name)}]"
        if kind == "bool":
            p.add_argument(options.flag(name), dest=name, nargs="?", const="true", metavar="BOOL", help=help_text)
        else:
            p.add_argument(options.flag(name), dest=name, metavar=kind.upper(), help=help_text)
    return p


def parse(argv: list[str] | None) -> Settings:
    args = vars(parser().parse_args(argv))
    if args.pop("help_options_markdown", False):
        print(options.markdown_table())
        sys.exit(0)
    return options.load(args)


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    if not s.certfile:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(s.certfile, s.keyfile)
        if s.client_ca:
            ctx.load_verify_locations(s.client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as e:
        raise SettingsError(f"TLS files (certfile, keyfile, client_ca) could not be loaded: {e}") from None
    return ctx


def url(s: Settings, port: int) -> str:
    scheme = "https" if s.certfile else "http"
    host = f"[{s.ip}]" if ":" in s.ip else s.ip
    query = "" if s.disable_auth else f"?token={s.token}"
    return f"{scheme}://{host}:{port}{s.base_url}{query}"


def app_runner(s: Settings) -> web.AppRunner:
    """The app as Portico serves it: its access lines, signals left to serve(), the drain's timeout
    (and aiohttp's default of not cancelling a handler whose client went away)."""
    return web.AppRunner(
        build_app(s), access_log_class=AccessLogger, handle_signals=False, shutdown_timeout=s.shutdown_timeout
    )


def listening_port(site: web.TCPSite, asked: int) -> int:
    """The port a site listens on: the one the system chose when asked for 0."""
    server = site._server
    sockets = getattr(server, "sockets", None)
    return int(sockets[0].getsockname()[1]) if sockets else asked


async def serve(s: Settings) -> None:
    tls = ssl_context(s)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # before anything starts: no window without cleanup
        loop.add_signal_handler(sig, stop.set)
    runner = app_runner(s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, s.ip, s.port, ssl_context=tls)
        try:
            await site.start()
        except OSError as e:
            raise SettingsError(
                f"cannot listen on {s.ip}:{s.port}: {e.strerror}; choose another --port or --ip"
            ) from None
        port = listening_port(site, s.port)
        if s.disable_auth:
            log.warning("AUTHENTICATION IS DISABLED: anyone who can reach %s:%d can run code as this user", s.ip, port)
        print(f"Portico {__version__} is serving at {url(s, port)}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    log.info("shutdown complete")


def raise_open_files_limit() -> None:
    """Each WebSocket client costs about seven descriptors; a soft limit of 1,024 is ~150 clients."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main(argv: list[str] | None = None) -> None:
    try:
        s = parse(argv)
        raise_open_files_limit()
        if not s.token and not s.disable_auth:
            s = s.with_token(new_token())
        configure(s.log_level, s.log_format)
        run(serve(s))
    except SettingsError as e:
        sys.exit(f"portico: {e}")


def run(coro: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
