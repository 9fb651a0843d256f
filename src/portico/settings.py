"""Every option of Portico, once: its type, default, environment variable and help.

Sources, lowest precedence first: the defaults here, a TOML file (``--config`` or
``PORTICO_CONFIG``), ``PORTICO_*`` environment variables, command-line flags.  An unknown
or invalid option raises :class:`SettingsError` with a one-line message that says what to fix.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import SettingsError

ENV_PREFIX = "PORTICO_"


def _opt(default: Any, help: str, *, minimum: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    meta = {"help": help, "minimum": minimum, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


DEFAULT_INHERITED_ENV = ["HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME"]


@dataclass(frozen=True)
class Settings:
    # server
    ip: str = _opt("127.0.0.1", "Address to bind. Anything but loopback exposes kernels to the network.")
    port: int = _opt(8888, "Port to listen on; 0 picks a free one.", minimum=0)
    base_url: str = _opt("/", "URL prefix of every route, e.g. /portico/.")
    root_dir: str = _opt("", "Directory kernels start in and `path` is confined to (default: the current directory).")
    config: str = _opt("", "A TOML file of options (keys are the option names below).")
    # auth
    token: str = _opt("", "Token clients must present; generated and printed when empty.")
    disable_auth: bool = _opt(
        False, "Serve without any token check. Only for trusted networks: everyone who reaches the port runs code."
    )
    allow_origin: str = _opt("", "Origin allowed for CORS and WebSocket upgrades ('*' for any). Off by default.")
    allow_origin_pat: str = _opt("", "Regular expression of allowed origins (full match).")
    allow_credentials: bool = _opt(False, "Send Access-Control-Allow-Credentials: true on CORS responses.")
    allow_methods: str = _opt(
        "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS", "Access-Control-Allow-Methods for CORS preflights."
    )
    allow_headers: str = _opt(
        "Authorization, Content-Type, X-XSRFToken, X-Requested-With",
        "Access-Control-Allow-Headers for CORS preflights.",
    )
    expose_headers: str = _opt("Location", "Access-Control-Expose-Headers on CORS responses.")
    max_age: int = _opt(0, "Access-Control-Max-Age (seconds) for CORS preflights; 0 leaves it out.", minimum=0)
    metrics_public: bool = _opt(False, "Serve /metrics without a token.")
    # TLS
    certfile: str = _opt("", "TLS certificate (PEM). With keyfile, Portico serves HTTPS and WSS.")
    keyfile: str = _opt("", "TLS private key (PEM).")
    client_ca: str = _opt("", "CA bundle (PEM): clients must present a certificate it signed.")
    # limits
    max_body_size: int = _opt(64 * 1024 * 1024, "Largest HTTP request body in bytes; larger ones get 413.", minimum=1)
    ws_max_message_size: int = _opt(64 * 1024 * 1024, "Largest WebSocket message from a client, in bytes.", minimum=1)
    ws_ping_interval: float = _opt(30.0, "Seconds between WebSocket keep-alive pings; 0 turns them off.", minimum=0)
    shutdown_timeout: float = _opt(
        5.0,
        "Seconds HTTP requests still running at shutdown may take to finish before they are cut short (and logged).",
        minimum=0,
    )
    memory_trim_interval: float = _opt(
        60.0,
        "Seconds between returns of freed memory to the system (glibc's malloc_trim, in a thread); 0 turns it off.",
        minimum=0,
    )
    client_buffer_limit: int = _opt(
        64 * 1024 * 1024,
        "Bytes queued for one slow WebSocket client before it is disconnected (close code 4008).",
        minimum=1024,
    )
    # kernels
    default_kernel_name: str = _opt("python3", "Kernelspec used when a request names none.")
    max_kernels: int = _opt(0, "Most kernels running at once; 0 means no limit. Creates beyond it get 403.", minimum=0)
    list_kernels: bool = _opt(True, "Whether GET /api/kernels lists running kernels.")
    kernel_env_inherit: list[str] = _opt(
        DEFAULT_INHERITED_ENV, "Server environment variables a kernel inherits besides PATH."
    )
    kernel_env_allow: list[str] = _opt([], "Request `env` names accepted besides KERNEL_*.")
    kernel_transport: str = _opt(
        "ipc",
        "How Portico reaches its kernels: ipc (Unix sockets in a private directory: no ports to race for, unreachable by other users) or tcp (loopback ports).",
        choices=("ipc", "tcp"),
    )
    state_dir: str = _opt(
        "",
        "Directory of Portico's state: the registry of the kernels it runs (SQLite), from which a restarted or crashed server re-attaches to its kernels (keep_kernels) or ends them. Empty: none is kept. One server at a time uses it.",
    )
    keep_kernels: bool = _opt(
        False,
        "Leave kernels running when the server stops, for the next Portico on the same state_dir to re-attach to (needs state_dir).",
    )
    remote_transport_encryption: str = _opt(
        "required",
        "CurveZMQ encryption of the ZeroMQ channels of kernels started through a provisioner (they listen on all interfaces of their host): required (a kernelspec that cannot do it fails to start), auto (where the kernelspec supports it) or disabled.",
        choices=("required", "auto", "disabled"),
    )
    kernel_iopub_hwm: int = _opt(
        0,
        "Messages an ipykernel kernel started by Portico holds on iopub while Portico is not reading; past it the kernel drops (and Portico says how many). 0: no limit, only the kernel's memory.",
        minimum=0,
    )
    kernel_start_timeout: float = _opt(60.0, "Seconds a new kernel has to answer kernel_info.", minimum=1)
    kernel_restart_output_wait: float = _opt(
        10.0,
        "Seconds a restart waits at most for the output the kernel published before it to reach Portico; what has not arrived by then is cut, and its clients are told.",
        minimum=0.1,
    )
    kernel_shutdown_wait: float = _opt(
        3.0, "Seconds a kernel has to exit after a shutdown request before it is killed.", minimum=0
    )
    kernel_poll_interval: float = _opt(
        1.0,
        "Seconds between checks that a kernel without a local process is alive (a local kernel's exit is seen at once, through a pidfd).",
        minimum=0.05,
    )
    autorestart: bool = _opt(True, "Restart a kernel that dies.")
    restart_limit: int = _opt(5, "Automatic restarts of one kernel before it is left dead.", minimum=0)
    cull_idle_timeout: float = _opt(0.0, "Shut down kernels idle this many seconds; 0 turns culling off.", minimum=0)
    cull_interval: float = _opt(300.0, "Seconds between culling passes.", minimum=0.1)
    cull_connected: bool = _opt(False, "Also cull idle kernels that have clients connected.")
    cull_busy: bool = _opt(False, "Also cull kernels that are busy.")
    # output journal and flow control
    journal_max_bytes: int = _opt(
        32 * 1024 * 1024,
        "Bytes of iopub output kept per kernel for clients that reconnect, counted as memory (messages and their Python objects); 0 turns the journal off.",
        minimum=0,
    )
    journal_max_age: float = _opt(600.0, "Seconds iopub output is kept in the journal.", minimum=0)
    limit_rate: bool = _opt(
        False,
        "Apply Jupyter Server's iopub rate limits (below) to each connection; off by default, Portico never drops output otherwise.",
    )
    iopub_msg_rate_limit: float = _opt(
        1000.0, "With limit_rate: most iopub messages per second per connection; 0 for no limit.", minimum=0
    )
    iopub_data_rate_limit: float = _opt(
        1000000.0, "With limit_rate: most stream bytes per second per connection; 0 for no limit.", minimum=0
    )
    rate_limit_window: float = _opt(3.0, "With limit_rate: seconds over which the rates are averaged.", minimum=0.1)
    # warm pool
    pool_size: int = _opt(1, "Warm kernels kept ready for each pooled kernelspec; 0 turns the pool off.", minimum=0)
    pool_kernels: list[str] = _opt([], "Kernelspecs that get a warm pool (default: the default kernelspec).")
    pool_max: int = _opt(
        8,
        "Most warm kernels per pooled kernelspec: the pool grows toward it while kernels are taken faster than it refills (an idle ipykernel holds about 50 MB).",
        minimum=0,
    )
    pool_idle_timeout: float = _opt(
        120.0, "Seconds without a kernel taken after which a grown pool halves, back toward pool_size.", minimum=0.1
    )
    # code over HTTP
    execution_timeout: float = _opt(
        0.0,
        "Default timeout, in seconds, of a request to POST /api/kernels/{id}/execute (0: none); past it the kernel is interrupted, and restarted if that does not end the request.",
        minimum=0,
    )
    one_shot_timeout: float = _opt(
        60.0, "Default timeout, in seconds, of a one-shot run (POST /api/execute); 0 for none.", minimum=0
    )
    execution_result_ttl: float = _opt(600.0, "Seconds a finished execution request stays pollable.", minimum=0.1)
    seed: str = _opt(
        "",
        "A notebook whose code cells run in every new kernel of its kernelspec before it is handed out, and again after a restart (Kernel Gateway's seed_uri).",
    )
    # notebook HTTP API
    notebook: list[str] = _opt(
        [],
        "Notebooks served as HTTP APIs (Kernel Gateway's notebook-http mode): FILE, mounted at the base URL, or /PREFIX=FILE; several comma-separated.",
    )
    notebook_kernel_name: str = _opt(
        "", "Kernelspec for every notebook API instead of the notebook's own (Kernel Gateway's force_kernel_name)."
    )
    notebook_pool_min: int = _opt(1, "Kernels each notebook API keeps running and seeded, even when idle.", minimum=1)
    notebook_pool_max: int = _opt(4, "Most kernels per notebook API; each serves one request at a time.", minimum=1)
    notebook_queue_size: int = _opt(
        64, "Requests per notebook API that may wait for a kernel; the next gets 503 with Retry-After.", minimum=0
    )
    notebook_idle_timeout: float = _opt(
        60.0, "Seconds a kernel beyond notebook_pool_min may stay idle before it is shut down.", minimum=0.1
    )
    notebook_timeout: float = _opt(
        60.0,
        "Seconds a notebook API request may run before its kernel is interrupted and the client gets 504; an annotation's timeout=N overrides it.",
        minimum=0.1,
    )
    notebook_interrupt_grace: float = _opt(
        5.0,
        "Seconds a notebook API kernel interrupted after a timeout has to come back before it is replaced.",
        minimum=0.1,
    )
    notebook_one_execution: bool = _opt(
        True,
        "Python kernels: set REQUEST, run the cell and its ResponseInfo in one execution (a third of Kernel Gateway's kernel work); off, three executions as Kernel Gateway does.",
    )
    notebook_debug: bool = _opt(False, "Include the traceback in the 500 response of a cell that raised.")
    notebook_source: bool = _opt(
        False, "Serve each notebook file at PREFIX/_api/source (Kernel Gateway's allow_notebook_download)."
    )
    notebook_public_dir: str = _opt(
        "", "A directory served as static files at /public/ (Kernel Gateway's static_path)."
    )
    notebook_comment_prefixes: list[str] = _opt(
        [], "LANGUAGE=PREFIX annotation comment markers beyond the built-in ones (python=#, scala=//, sql=--, ...)."
    )
    reload: bool = _opt(
        False,
        "Watch the notebook files: a saved change is served by freshly seeded kernels, and no request fails across the switch.",
    )
    # process proxy
    servers: dict[str, Any] = _opt(
        {},
        "Proxied servers, jupyter-server-proxy's options per name: a [servers.NAME] table in the TOML file, or JSON.",
    )
    proxy_config: str = _opt(
        "",
        "A Python file setting c.ServerProxy.servers (and host_allowlist, non_service_rewrite_response) as jupyter-server-proxy's config does; callables allowed.",
    )
    proxy_entry_points: bool = _opt(
        True, "Load the servers of installed jupyter_serverproxy_servers entry points (plugin packages)."
    )
    proxy_unknown_options: str = _opt(
        "error",
        "An unknown server option in Portico's own configuration (servers, proxy_config) stops the start (error) or is logged and ignored (warn); in a plugin's entry point it is always logged and ignored.",
        choices=("error", "warn"),
    )
    proxy_host_allowlist: list[str] = _opt(["localhost", "127.0.0.1", "::1"], "Hosts /proxy/HOST:PORT/ may reach.")
    proxy_env_inherit: list[str] = _opt(
        DEFAULT_INHERITED_ENV,
        "Server environment variables a proxied process inherits besides PATH (its `environment` adds more).",
    )
    proxy_connect_timeout: float = _opt(10.0, "Seconds to connect to a backend before answering 504.", minimum=0.1)
    proxy_response_timeout: float = _opt(
        300.0,
        "Seconds a backend may take to start answering (its headers) before 504; bodies then stream without a limit.",
        minimum=0.1,
    )
    proxy_restart_min_uptime: float = _opt(
        10.0,
        "A proxied process that exits sooner than this after starting counts as crashing: it is restarted with exponential backoff.",
        minimum=0,
    )
    proxy_restart_max_backoff: float = _opt(
        30.0, "Longest wait between restarts of a crashing proxied process.", minimum=0.1
    )
    proxy_log_lines: int = _opt(200, "Lines of each proxied process's stdout and stderr kept for the API.", minimum=0)
    proxy_stop_wait: float = _opt(
        5.0, "Seconds a proxied process has between SIGTERM and SIGKILL when it is stopped.", minimum=0.1
    )
    # contents and the browser page
    page: bool = _opt(True, "Serve the browser page (launcher and notebook) at the base URL, and its login.")
    autosave_interval: float = _opt(
        30.0, "Seconds between the notebook page's saves of unsaved changes; 0 turns autosave off.", minimum=0
    )
    contents_allow_hidden: bool = _opt(
        False,
        "Let the contents API list and open hidden files (names starting with a dot), and kernels and sessions start in hidden directories.",
    )
    # logging
    log_level: str = _opt("info", "Log level.", choices=("debug", "info", "warning", "error"))
    log_format: str = _opt("text", "Log line format.", choices=("text", "json"))

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            minimum = f.metadata["minimum"]
            if minimum is not None and value < minimum:
                raise SettingsError(f"option {f.name} must be at least {minimum}, got {value}")
            choices = f.metadata["choices"]
            if choices and value not in choices:
                raise SettingsError(f"option {f.name} must be one of {', '.join(choices)}, got {value!r}")
        if bool(self.certfile) != bool(self.keyfile):
            raise SettingsError("options certfile and keyfile go together: give both or neither")
        if self.keep_kernels and not self.state_dir:
            raise SettingsError("option keep_kernels needs state_dir: where the next server finds the kernels")
        if self.allow_origin_pat:
            try:
                re.compile(self.allow_origin_pat)
            except re.error as e:
                raise SettingsError(f"option allow_origin_pat is not a valid regular expression: {e}") from None
        object.__setattr__(self, "base_url", normalize_base_url(self.base_url))
        if self.seed and not Path(self.seed).is_file():
            raise SettingsError(f"option seed: {self.seed} is not a file")
        root = Path(self.root_dir or os.getcwd()).resolve()
        if not root.is_dir():
            raise SettingsError(f"option root_dir: {root} is not a directory")
        object.__setattr__(self, "root_dir", str(root))

    def with_token(self, token: str) -> Settings:
        return dataclasses.replace(self, token=token)


def normalize_base_url(url: str) -> str:
    return "/" + url.strip("/") + "/" if url.strip("/") else "/"


OPTIONS = {f.name: f for f in fields(Settings)}


def env_var(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def type_name(name: str) -> str:
    return str(OPTIONS[name].type).replace("list[str]", "list").replace("dict[str, Any]", "table")


def parse_value(name: str, raw: Any) -> Any:
    """Convert one raw value (a string from env/CLI, or a TOML value) to the option's type."""
    kind = type_name(name)
    try:
        if kind == "table":
            if isinstance(raw, str):
                raw = json.loads(raw)
            if not isinstance(raw, dict):
                raise ValueError
            return raw
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "int":
            if isinstance(raw, bool):
                raise ValueError
            return int(raw)
        if kind == "float":
            if isinstance(raw, bool):
                raise ValueError
            return float(raw)
        if kind == "list":
            if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
                return list(raw)
            if isinstance(raw, str):
                return [x.strip() for x in raw.split(",") if x.strip()]
            raise ValueError
        if not isinstance(raw, str):
            raise ValueError
        return raw
    except ValueError:  # json.JSONDecodeError too
        hint = {
            "table": "a TOML table or a JSON object",
            "bool": "true or false",
            "int": "a whole number",
            "float": "a number",
            "list": "a comma-separated list",
        }.get(kind, "a string")
        raise SettingsError(f"option {name} expects {hint}, got {raw!r}") from None


def _from_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"config file {path} is not valid TOML: {e}") from None
    section = data.get("portico", data)
    unknown = sorted(set(section) - set(OPTIONS))
    if unknown:
        raise SettingsError(f"config file {path}: unknown option {unknown[0]!r} (see portico --help)")
    return {k: parse_value(k, v) for k, v in section.items()}


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for key, raw in environ.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in OPTIONS:
            raise SettingsError(f"unknown environment variable {key} (see portico --help)")
        values[name] = parse_value(name, raw)
    return values


def load(cli: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults < TOML < environment < command line into a validated Settings."""
    env_values = _from_env(os.environ if environ is None else environ)
    cli_values = {k: parse_value(k, v) for k, v in cli.items()}
    config_path = cli_values.get("config") or env_values.get("config")
    merged: dict[str, Any] = {}
    if config_path:
        merged.update(_from_toml(config_path))
    merged.update(env_values)
    merged.update(cli_values)
    return Settings(**merged)


def markdown_table() -> str:
    """The README's option table, generated from the fields above."""
    rows = ["| option | flag | env | type | default | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for name, f in OPTIONS.items():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[operator]
        shown = (
            ", ".join(default)
            if isinstance(default, list)
            else str(default).lower()
            if isinstance(default, bool)
            else default
        )
        rows.append(
            f"| {name} | `{flag(name)}` | `{env_var(name)}` | {type_name(name)} | `{shown}` | {f.metadata['help']} |"
        )
    return "\n".join(rows)
