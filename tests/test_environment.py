"""What children inherit: PATH and an allow-list, never Portico's own variables or its token."""

from __future__ import annotations

import pytest

from portico.environment import inherited, without_secrets


def test_only_path_and_the_named_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEP_ME", "1")
    monkeypatch.setenv("DROP_ME", "2")
    env = inherited(["KEEP_ME", "NOT_SET"])
    assert set(env) == {"PATH", "KEEP_ME"} and env["KEEP_ME"] == "1"


def test_secrets_are_dropped() -> None:
    env = {"PORTICO_TOKEN": "t", "PORTICO_PORT": "1", "URL": "http://x/?token=s3cret", "HOME": "/home/u"}
    assert without_secrets(env, "s3cret") == {"HOME": "/home/u"}
    assert without_secrets({"A": "anything"}, "") == {"A": "anything"}  # no token: nothing to hide
