"""settings.py: every option once; defaults < TOML < environment < command line; one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico import settings
from portico.errors import SettingsError
from portico.settings import Settings, load, parse_value


def test_precedence(tmp_path: Path) -> None:
    config = tmp_path / "portico.toml"
    config.write_text('[portico]\nport = 1111\nip = "127.0.0.2"\nlog_level = "debug"\n')
    s = load({"config": str(config), "port": "3333"}, {"PORTICO_PORT": "2222", "PORTICO_IP": "127.0.0.3"})
    assert (s.port, s.ip, s.log_level) == (3333, "127.0.0.3", "debug")


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("port", "8000", 8000),
        ("cull_idle_timeout", "1.5", 1.5),
        ("autorestart", "off", False),
        ("autorestart", "YES", True),
        ("kernel_env_allow", "A, B,,C", ["A", "B", "C"]),
        ("kernel_env_allow", ["A"], ["A"]),
    ],
)
def test_values_are_parsed_by_type(name: str, raw: object, value: object) -> None:
    assert parse_value(name, raw) == value


@pytest.mark.parametrize(
    ("name", "raw", "says"),
    [
        ("port", "eighty", "option port expects a whole number, got 'eighty'"),
        ("port", True, "expects a whole number"),
        ("autorestart", "maybe", "expects true or false"),
        ("cull_idle_timeout", "soon", "expects a number"),
        ("kernel_env_allow", [1], "expects a comma-separated list"),
    ],
)
def test_a_bad_value_names_the_option_and_what_it_expects(name: str, raw: object, says: str) -> None:
    with pytest.raises(SettingsError, match=says):
        parse_value(name, raw)


def test_checks_after_parsing(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="option kernel_start_timeout must be at least 1"):
        Settings(kernel_start_timeout=0.5)
    with pytest.raises(SettingsError, match="option log_level must be one of"):
        Settings(log_level="loud")
    with pytest.raises(SettingsError, match="certfile and keyfile go together"):
        Settings(certfile=str(tmp_path / "c.pem"))
    with pytest.raises(SettingsError, match="root_dir: .* is not a directory"):
        Settings(root_dir=str(tmp_path / "missing"))
    assert Settings(base_url="a/b").base_url == "/a/b/" and Settings(base_url="/").base_url == "/"


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown environment variable PORTICO_SPEED"):
        load({}, {"PORTICO_SPEED": "3"})
    config = tmp_path / "c.toml"
    config.write_text("speed = 3\n")
    with pytest.raises(SettingsError, match="unknown option 'speed'"):
        load({"config": str(config)}, {})
    config.write_text("port = [")
    with pytest.raises(SettingsError, match="is not valid TOML"):
        load({"config": str(config)}, {})


def test_every_option_has_a_row_in_the_table() -> None:
    table = settings.markdown_table()
    assert all(f"| {name} | `--{name.replace('_', '-')}` |" in table for name in settings.OPTIONS)
