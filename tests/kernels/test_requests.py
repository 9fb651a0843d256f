"""What a client may ask of a new kernel: every bad field a BadRequest (or 403/404) naming it,
before anything starts.  In-process: these are rules, not behaviour of a running kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico.errors import BadRequest, Forbidden, NotFound
from portico.kernels.requests import MAX_ENV_ENTRIES, MAX_ENV_VALUE, start_request
from portico.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    (tmp_path / "work" / "deep").mkdir(parents=True)
    (tmp_path / "work" / "deep" / "nb.ipynb").write_text("{}")
    return Settings(root_dir=str(tmp_path), token="secret-token", kernel_env_allow=["EXTRA"])


def test_a_request_with_nothing_gets_the_defaults(settings: Settings) -> None:
    request = start_request(settings)
    assert (request.name, request.cwd, request.env, request.kernel_id) == (
        settings.default_kernel_name,
        settings.root_dir,
        {},
        None,
    )


def test_the_path_of_a_notebook_gives_its_directory(settings: Settings) -> None:
    assert start_request(settings, path="work/deep/nb.ipynb").cwd == str(Path(settings.root_dir, "work", "deep"))
    assert start_request(settings, path="work/deep/not-yet.ipynb").cwd == str(Path(settings.root_dir, "work", "deep"))


@pytest.mark.parametrize(
    ("fields", "error", "says"),
    [
        ({"name": 3}, BadRequest, "name must be a kernelspec name"),
        ({"path": "a\0b"}, BadRequest, "path may not contain NUL"),
        ({"path": ["a"]}, BadRequest, "path must be a string"),
        ({"path": "work/../work"}, Forbidden, "'..' segment"),
        ({"path": ".hidden/nb.ipynb"}, NotFound, "No such file"),
        ({"env": ["A"]}, BadRequest, "env must be an object"),
        ({"env": {"KERNEL_A": 1}}, BadRequest, "env entry 'KERNEL_A'"),
        ({"env": {"A B": "x"}}, BadRequest, "plain name"),
        ({"env": {"KERNEL_A": "x" * (MAX_ENV_VALUE + 1)}}, BadRequest, "longer than"),
        ({"env": {f"KERNEL_{i}": "x" for i in range(MAX_ENV_ENTRIES + 1)}}, BadRequest, "entries"),
        ({"kernel_id": "not-a-uuid"}, BadRequest, "kernel_id must be a UUID"),
        ({"kernel_id": 7}, BadRequest, "kernel_id must be a UUID"),
    ],
)
def test_each_bad_field_is_refused_by_name(
    settings: Settings, fields: dict[str, object], error: type, says: str
) -> None:
    with pytest.raises(error) as caught:
        start_request(settings, **fields)
    assert says in caught.value.message


def test_env_keeps_kernel_names_and_the_allowed_ones_and_never_the_token(settings: Settings) -> None:
    env = {"KERNEL_A": "1", "EXTRA": "2", "OTHER": "3", "KERNEL_LEAK": "has secret-token in it"}
    assert start_request(settings, env=env).env == {"KERNEL_A": "1", "EXTRA": "2"}


def test_a_kernel_id_is_made_canonical(settings: Settings) -> None:
    upper = "6F1C2B1E-8A4B-4C2D-9E3F-0123456789AB"
    assert start_request(settings, kernel_id=upper).kernel_id == upper.lower()
