"""Proxied servers from their three sources, with jupyter-server-proxy's options.

Sources, later ones winning for the same name: installed `jupyter_serverproxy_servers`
entry points (each a callable returning an options dict), the Python file of the option
proxy_config (`c.ServerProxy.servers = {...}`, as in jupyter_server_config.py), and the
`servers` option (a [servers.NAME] table in Portico's TOML file).  A bad option in Portico's
own configuration is a SettingsError naming the server and the option: it stops the start.
A plugin package does not: one whose entry point raises or returns bad options is logged as
a warning, served nowhere and reported (ProxyConfig.broken, shown in /api/status), as
jupyter-server-proxy serves the other plugins; an unknown option in a plugin is ignored with
a warning whatever proxy_unknown_options says, since an operator cannot edit the package.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..settings import Settings

log = logging.getLogger("portico")

ENTRY_POINT_GROUP = "jupyter_serverproxy_servers"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
OPTIONS = {
    "command",
    "environment",
    "timeout",
    "absolute_url",
    "port",
    "unix_socket",
    "mappath",
    "launcher_entry",
    "new_browser_tab",
    "request_headers_override",
    "rewrite_response",
    "update_last_activity",
    "exclude_last_activity_patterns",
    "raw_socket_proxy",
    "progressive",
    "autostart",
    "probe_path",  # Portico's: start with Portico; the readiness probe's path
}
LAUNCHER_OPTIONS = {"enabled", "icon_path", "title", "path_info", "category"}


@dataclass(frozen=True)
class Launcher:
    enabled: bool = True
    icon_path: str = ""
    title: str = ""
    path_info: str = ""
    category: str = "Notebook"


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: list[str] | Callable[..., list[str]] = field(default_factory=list)
    environment: dict[str, str] | Callable[..., dict[str, str]] = field(default_factory=dict)
    timeout: float = 5.0
    absolute_url: bool = False
    port: int = 0
    unix_socket: bool | str = False
    mappath: dict[str, str] | Callable[..., str] = field(default_factory=dict)
    launcher: Launcher = Launcher()
    new_browser_tab: bool = True
    request_headers_override: dict[str, str] | Callable[..., dict[str, str]] = field(default_factory=dict)
    rewrite_response: tuple[Callable[..., Any], ...] = ()
    update_last_activity: bool | Callable[..., bool] = True
    exclude_last_activity_patterns: tuple[str, ...] = ()
    raw_socket_proxy: bool = False
    autostart: bool = False
    probe_path: str = "/"
    source: str = ""  # where it was configured, for messages

    @property
    def runs_process(self) -> bool:
        return bool(self.command)


def call_with(function: Callable[..., Any], **available: Any) -> Any:
    """Call with the arguments it names (jupyter-server-proxy passes callables what they ask for)."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return function()
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return function(**available)
    return function(**{name: available[name] for name in parameters if name in available})


def make_spec(name: str, options: Any, source: str, unknown: str) -> ServerSpec:
    where = f"server {name!r} ({source})"
    if not NAME.fullmatch(name):
        raise SettingsError(f"{where}: the name must be letters, digits, '.', '_' or '-'")
    if not isinstance(options, dict):
        raise SettingsError(f"{where}: expected a dict of options, got {type(options).__name__}")
    extra = sorted(set(options) - OPTIONS)
    if extra:
        message = f"{where}: unknown option {extra[0]!r} (known: {', '.join(sorted(OPTIONS))})"
        if unknown == "error":
            raise SettingsError(message + "; set proxy_unknown_options = 'warn' to ignore it")
        log.warning("%s; ignored", message)
    o = {k: v for k, v in options.items() if k in OPTIONS}
    try:
        return ServerSpec(
            name=name,
            command=_command(o.get("command", [])),
            environment=_mapping_or_callable(o.get("environment", {}), "environment"),
            timeout=_number(o.get("timeout", 5.0), "timeout"),
            absolute_url=_bool(o.get("absolute_url", False), "absolute_url"),
            port=_port(o.get("port", 0)),
            unix_socket=_unix_socket(o.get("unix_socket", False)),
            mappath=_mapping_or_callable(o.get("mappath", {}), "mappath"),
            launcher=_launcher(o.get("launcher_entry", {}), name),
            new_browser_tab=_bool(o.get("new_browser_tab", True), "new_browser_tab"),
            request_headers_override=_mapping_or_callable(
                o.get("request_headers_override", {}), "request_headers_override"
            ),
            rewrite_response=_callables(o.get("rewrite_response", ())),
            update_last_activity=o["update_last_activity"]
            if callable(o.get("update_last_activity"))
            else _bool(o.get("update_last_activity", True), "update_last_activity"),
            exclude_last_activity_patterns=tuple(
                _strings(o.get("exclude_last_activity_patterns", []), "exclude_last_activity_patterns")
            ),
            raw_socket_proxy=_bool(o.get("raw_socket_proxy", False), "raw_socket_proxy"),
            autostart=_bool(o.get("autostart", False), "autostart"),
            probe_path="/" + str(o.get("probe_path", "/")).lstrip("/"),
            source=source,
        )
    except (TypeError, ValueError) as e:
        raise SettingsError(f"{where}: {e}") from None


def _command(value: Any) -> list[str] | Callable[..., list[str]]:
    if callable(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        raise ValueError("command must be a list of strings (or a callable returning one), not a string")
    return _strings(value, "command")


def _strings(value: Any, option: str) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"{option} must be a list of strings")
    return list(value)


def _mapping_or_callable(value: Any, option: str) -> Any:
    if callable(value):
        return value
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{option} must be a dict of strings to strings, or a callable returning one")
    return dict(value)


def _number(value: Any, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{option} must be a positive number of seconds")
    return float(value)


def _bool(value: Any, option: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{option} must be true or false")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError("port must be a whole number from 0 (a free port) to 65535")
    return value


def _unix_socket(value: Any) -> bool | str:
    if value is None:
        return False
    if not isinstance(value, (bool, str)):
        raise ValueError("unix_socket must be true (a private temporary socket) or a path")
    return value


def _callables(value: Any) -> tuple[Callable[..., Any], ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    if not all(callable(f) for f in items):
        raise ValueError("rewrite_response must be a callable or a list of callables")
    return tuple(items)


def _launcher(value: Any, name: str) -> Launcher:
    if not isinstance(value, dict):
        raise ValueError("launcher_entry must be a dict")
    extra = set(value) - LAUNCHER_OPTIONS
    if extra:
        raise ValueError(f"launcher_entry has unknown key {sorted(extra)[0]!r}")
    return Launcher(
        enabled=bool(value.get("enabled", True)),
        icon_path=str(value.get("icon_path", "")),
        title=str(value.get("title", name)),
        path_info=str(value.get("path_info", name + "/")),
        category=str(value.get("category", "Notebook")),
    )


# sources ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrokenPlugin:
    name: str
    entry_point: str
    error: str


@dataclass
class ProxyConfig:
    servers: dict[str, ServerSpec]
    host_allowlist: list[str] | Callable[..., bool]
    non_service_rewrite_response: tuple[Callable[..., Any], ...] = ()
    broken: tuple[BrokenPlugin, ...] = ()  # plugins whose entry point failed: served nowhere


class _Section:
    """`c.ServerProxy.servers = ...`: attribute assignments collected, anything else ignored."""

    def __init__(self) -> None:
        self.__dict__["values"] = {}

    def __getattr__(self, name: str) -> Any:
        return self.values.setdefault(name, _Section()) if name[:1].isupper() else self.values.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self.values[name] = value


def load(settings: Settings) -> ProxyConfig:
    unknown = settings.proxy_unknown_options
    servers: dict[str, ServerSpec] = {}
    broken: list[BrokenPlugin] = []
    if settings.proxy_entry_points:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                servers[ep.name] = make_spec(ep.name, ep.load()(), f"entry point {ep.value}", "warn")
            except Exception as e:  # anything a third-party package does on import or call
                error = f"{type(e).__name__}: {e}"
                log.warning(
                    "proxy plugin %r (entry point %s) failed to load and is not served: %s", ep.name, ep.value, error
                )
                broken.append(BrokenPlugin(ep.name, ep.value, error))
    host_allowlist: list[str] | Callable[..., bool] = list(settings.proxy_host_allowlist)
    rewrites: tuple[Callable[..., Any], ...] = ()
    if settings.proxy_config:
        section = _python_config(settings.proxy_config)
        for name, options in (section.get("servers") or {}).items():
            servers[name] = make_spec(name, options, settings.proxy_config, unknown)
        if section.get("host_allowlist") is not None:
            host_allowlist = section["host_allowlist"]
        if section.get("non_service_rewrite_response") is not None:
            rewrites = _callables(section["non_service_rewrite_response"])
    for name, options in settings.servers.items():
        servers[name] = make_spec(name, options, "option servers", unknown)
    return ProxyConfig(servers, host_allowlist, rewrites, tuple(broken))


def _python_config(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise SettingsError(f"option proxy_config: {path} is not a file")
    c = _Section()
    try:
        code = compile(file.read_text(), str(file), "exec")
        exec(code, {"c": c, "get_config": lambda: c, "__file__": str(file), "__name__": "__portico_config__"})
    except Exception as e:
        raise SettingsError(f"option proxy_config: {path} failed: {type(e).__name__}: {e}") from None
    section = c.values.get("ServerProxy")
    return section.values if isinstance(section, _Section) else {}
