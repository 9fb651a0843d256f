"""paths.confine: the one set of rules for every path a client names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portico.errors import BadRequest, Forbidden, NotFound
from portico.paths import clean, confine


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "a" / "b").mkdir(parents=True)
    (tmp_path / "root" / ".hidden").mkdir()
    (tmp_path / "outside").mkdir()
    return (tmp_path / "root").resolve()


def test_empty_dot_and_slashes_are_the_same_path(root: Path) -> None:
    assert clean("/a//./b/") == "a/b" and clean("a\\b") == "a/b"
    assert confine(root, "") == root and confine(root, "/") == root
    assert confine(root, "a/./b") == root / "a" / "b"


@pytest.mark.parametrize(
    ("api_path", "error", "says"),
    [
        (None, BadRequest, "must be a string"),
        (3, BadRequest, "must be a string"),
        ("a\0b", BadRequest, "may not contain NUL"),
        ("a/../a", Forbidden, "'..' segment"),  # even one that stays inside
        ("..", Forbidden, "'..' segment"),
        (".hidden", NotFound, "No such file"),
        ("a/.secret/x", NotFound, "No such file"),
    ],
)
def test_what_is_refused(root: Path, api_path: object, error: type, says: str) -> None:
    with pytest.raises(error) as caught:
        confine(root, api_path, field="path")
    assert says in caught.value.message


def test_the_field_is_named_in_the_error(root: Path) -> None:
    with pytest.raises(BadRequest, match="resource may not contain NUL"):
        confine(root, "x\0", field="resource")


def test_hidden_names_are_allowed_when_asked(root: Path) -> None:
    assert confine(root, ".hidden", hidden=True) == root / ".hidden"


def test_a_symlink_that_leads_outside_is_forbidden(root: Path) -> None:
    os.symlink(root.parent / "outside", root / "a" / "out")
    with pytest.raises(Forbidden, match="leads outside the root directory"):
        confine(root, "a/out")
    os.symlink(root / "a" / "b", root / "inside")
    assert confine(root, "inside") == root / "inside"  # a link that stays inside is fine
