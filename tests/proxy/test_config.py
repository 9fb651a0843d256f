"""Server options from the TOML table, a Python config file and entry points; every bad value named."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico.errors import SettingsError
from portico.proxy.config import call_with, load, make_spec
from portico.settings import Settings
from portico.settings import load as load_settings


def test_toml_table_and_defaults(tmp_path: Path) -> None:
    toml = tmp_path / "portico.toml"
    toml.write_text(
        '[servers.app]\ncommand = ["app", "--port", "{port}"]\ntimeout = 7\nabsolute_url = true\n'
        '[servers.app.launcher_entry]\ntitle = "App"\n[servers.external]\nport = 9999\n'
    )
    config = load(load_settings({"config": str(toml), "proxy_entry_points": "false"}, {}))
    app, external = config.servers["app"], config.servers["external"]
    assert (app.command, app.timeout, app.absolute_url, app.launcher.title) == (
        ["app", "--port", "{port}"],
        7.0,
        True,
        "App",
    )
    assert (app.new_browser_tab, app.unix_socket, app.launcher.path_info) == (
        True,
        False,
        "app/",
    )  # as jupyter-server-proxy: no redirect
    assert not external.runs_process and external.port == 9999


def test_python_config_with_callables_and_host_allowlist(tmp_path: Path) -> None:
    file = tmp_path / "jupyter_server_config.py"
    file.write_text(
        "c.ServerApp.ip = '0.0.0.0'  # another app's option: ignored\n"
        "c.ServerProxy.servers = {'lab': {'command': lambda port: ['x', str(port)], "
        "'environment': lambda: {'A': '1'}, 'mappath': lambda path: path}}\n"
        "c.ServerProxy.host_allowlist = ['10.0.0.0/8']\n"
    )
    config = load(Settings(proxy_config=str(file), proxy_entry_points=False))
    lab = config.servers["lab"]
    assert callable(lab.command) and call_with(lab.command, port=5, unix_socket="", base_url="/") == ["x", "5"]
    assert config.host_allowlist == ["10.0.0.0/8"]


@pytest.mark.parametrize(
    "options, problem",
    [
        ({"command": "app --port {port}"}, "command must be a list of strings"),
        ({"command": ["app"], "timeout": -1}, "timeout must be a positive number"),
        ({"port": 70000}, "port must be a whole number"),
        ({"unix_socket": 3}, "unix_socket must be true"),
        ({"environment": {"A": 1}}, "environment must be a dict of strings"),
        ({"launcher_entry": {"colour": "red"}}, "launcher_entry has unknown key 'colour'"),
        ({"rewrite_response": "nope"}, "rewrite_response must be a callable"),
        ({"comand": ["app"]}, "unknown option 'comand'"),
    ],
)
def test_bad_options_name_the_server_and_the_option(options: dict[str, object], problem: str) -> None:
    with pytest.raises(SettingsError, match="server 'app'") as e:
        make_spec("app", options, "test", "error")
    assert problem in str(e.value)


def test_unknown_options_can_be_only_warned_about() -> None:
    spec = make_spec("app", {"command": ["app"], "stray": 1}, "test", "warn")
    assert spec.command == ["app"]


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is not a file"):
        load(Settings(proxy_config=str(tmp_path / "nope.py"), proxy_entry_points=False))
    (tmp_path / "broken.py").write_text("c.ServerProxy.servers = {\n")
    with pytest.raises(SettingsError, match="broken.py failed: SyntaxError"):
        load(Settings(proxy_config=str(tmp_path / "broken.py"), proxy_entry_points=False))
    with pytest.raises(SettingsError, match="option servers expects a TOML table or a JSON object"):
        load_settings({"servers": "[1, 2]"}, {})
    with pytest.raises(SettingsError, match="the name must be"):
        make_spec("a/b", {}, "test", "error")


def test_entry_points_are_loaded() -> None:
    servers = load(Settings()).servers
    assert servers["hello"].unix_socket is True and callable(servers["panel"].command)
    assert servers["hello"].source.startswith("entry point")


@pytest.mark.parametrize(
    "servers, problem",
    [
        ('{"app": {"comand": ["x"]}}', "server 'app' (option servers): unknown option 'comand'"),
        ('{"api": {"port": 1}}', "server 'api': the name is one of Portico's own routes"),
        ('{"notebooks": {"port": 1}}', "server 'notebooks': the name is one of Portico's own routes"),
        ('{"app": {"port": "eighty"}}', "server 'app' (option servers): port must be a whole number"),
    ],
)
def test_a_bad_server_stops_the_start_in_one_line(servers: str, problem: str) -> None:
    """The app refuses to build; the command line prints a SettingsError as its one line (test_cli)."""
    from portico.app import build_app

    with pytest.raises(SettingsError) as e:
        build_app(load_settings({"servers": servers, "proxy_entry_points": "false"}, {}))
    assert str(e.value).startswith(problem), e.value


def test_host_allow_list_names_ranges_and_wildcards() -> None:
    from portico.proxy.routes import ProxyRoutes
    from portico.urls import Owners

    routes = ProxyRoutes(
        Settings(proxy_entry_points=False, proxy_host_allowlist=["localhost", "10.0.0.0/8", "*.internal"]),
        Owners(page=True),
    )
    assert [
        routes._host_allowed(h)
        for h in ("localhost", "10.1.2.3", "db.internal", "11.0.0.1", "a.b.internal", "example.org")
    ] == [True, True, True, False, False, False]
