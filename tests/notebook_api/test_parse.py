"""Annotations -> routes, and every way a notebook can be wrong (no kernel needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portico.errors import SettingsError
from portico.notebook_api.parse import COMMENT_PREFIXES, comment_prefixes, load
from portico_testing import write_notebook

INSTALLED = {"python3": "python", "scala": "scala"}


def parse(tmp_path: Path, cells: list[str | tuple[str, str]], **kw: str) -> object:
    path = write_notebook(tmp_path / "api.ipynb", cells, **kw)
    return load(path, kernel_name="", installed=INSTALLED, prefixes=COMMENT_PREFIXES)


def test_routes_seeds_and_joined_cells(tmp_path: Path) -> None:
    api = parse(
        tmp_path,
        [
            "import json",
            "# GET /a\nprint(1)",
            "x = 2",
            "# GET /a\nprint(2)",
            "# POST /a\nprint(3)",
            "# ResponseInfo GET /a\nprint('{}')",
            "# just a comment",
            "",
        ],
    )
    routes = {(r.verb, r.path): r for r in api.routes}  # type: ignore[attr-defined]
    assert set(routes) == {("GET", "/a"), ("POST", "/a")}
    assert routes["GET", "/a"].code == "# GET /a\nprint(1)\n# GET /a\nprint(2)"
    assert routes["GET", "/a"].response_code == "# ResponseInfo GET /a\nprint('{}')"
    assert routes["POST", "/a"].response_code is None
    assert api.seed.cells == ("import json", "x = 2", "# just a comment")  # type: ignore[attr-defined]
    assert api.kernel_name == "python3" and api.language == "python"  # type: ignore[attr-defined]


def test_routes_without_parameters_match_first(tmp_path: Path) -> None:
    api = parse(tmp_path, ["# GET /a/:x\n1", "# GET /a/b/:y\n1", "# GET /a/b\n1", "# GET /:z\n1"])
    assert [r.path for r in api.routes] == ["/a/b", "/a/b/:y", "/a/:x", "/:z"]  # type: ignore[attr-defined]
    route = api.routes[1]  # type: ignore[attr-defined]
    assert route.params == ["y"] and route.template == "/a/b/{y}"
    m = route.pattern.fullmatch("/a/b/caf%C3%A9")
    assert m is not None and m.group("y") == "caf%C3%A9"
    assert route.pattern.fullmatch("/a/b/c/d") is None  # a parameter is one segment


def test_timeout_option_and_other_verbs(tmp_path: Path) -> None:
    api = parse(tmp_path, ["# PATCH /p timeout=2.5\n1", "# HEAD /h\n1", "# DELETE /d/:id\n1"])
    routes = {r.verb: r for r in api.routes}  # type: ignore[attr-defined]
    assert routes["PATCH"].timeout == 2.5 and routes["HEAD"].timeout is None and "DELETE" in routes


def test_text_after_the_path_is_a_comment_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Kernel Gateway's own notebooks write `# GET /fakeprint 'I am not a real lang!'`: served as /fakeprint;
    a word that looks like an option still has to be a known one."""
    api = parse(tmp_path, ["# GET /fakeprint 'I am not a real lang!'\nprint(1)", "# GET /t timeout=3 (slow)\n1"])
    routes = {r.path: r for r in api.routes}  # type: ignore[attr-defined]
    assert set(routes) == {"/fakeprint", "/t"} and routes["/t"].timeout == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert "api.ipynb, code cell 1: ignoring \"'I am not a real lang!'\" after the path" in warnings[0]
    assert "code cell 2: ignoring '(slow)'" in warnings[1]
    with pytest.raises(SettingsError, match="code cell 1: unknown annotation option 'speed=3'"):
        parse(tmp_path, ["# GET /a a remark speed=3\n1"])


def test_other_languages_use_their_comment_prefix(tmp_path: Path) -> None:
    api = parse(
        tmp_path, ["// GET /s\nprintln(1)", "# GET /not-an-annotation-in-scala"], kernel="scala", language="scala"
    )
    assert [r.path for r in api.routes] == ["/s"]  # type: ignore[attr-defined]
    assert comment_prefixes(["mylang=;;"])["mylang"] == ";;"
    with pytest.raises(SettingsError, match="LANGUAGE=PREFIX"):
        comment_prefixes(["nonsense"])


@pytest.mark.parametrize(
    "cell, problem",
    [
        ("# GET /a/:\n1", "bad path"),
        ("# GET /a/:1x\n1", "bad path"),
        ("# GET /a/:x/:x\n1", "parameter repeats"),
        ("# GET /a speed=3\n1", "unknown annotation option 'speed=3'"),
        ("# GET /a timeout=soon\n1", "timeout must be a positive number"),
        ("# ResponseInfo GET\n1", "cannot parse the annotation"),
        ("# ResponseInfo GET /nowhere\nprint('{}')", "ResponseInfo cell for GET /nowhere, which has no endpoint"),
    ],
)
def test_unparsable_annotations_name_the_cell(tmp_path: Path, cell: str, problem: str) -> None:
    with pytest.raises(SettingsError, match="api.ipynb") as e:
        parse(tmp_path, ["# GET /ok\n1", cell])
    assert problem in str(e.value)


def test_bad_notebooks(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such file"):
        load(str(tmp_path / "missing.ipynb"), kernel_name="", installed=INSTALLED, prefixes=COMMENT_PREFIXES)
    (tmp_path / "text.ipynb").write_text("this is not JSON")
    with pytest.raises(SettingsError, match="is not a readable notebook"):
        load(str(tmp_path / "text.ipynb"), kernel_name="", installed=INSTALLED, prefixes=COMMENT_PREFIXES)
    with pytest.raises(SettingsError, match="has no endpoints"):
        parse(tmp_path, ["print(1)"])
    with pytest.raises(SettingsError, match="needs kernel 'nokernel', which is not installed"):
        parse(tmp_path, ["# GET /a\n1"], kernel="nokernel")


SPEC = """```json
{"swagger": "2.0", "info": {"title": "Pets", "version": "1"},
 "paths": {"/pets/{id}": {"get": {"operationId": "getPet", "summary": "One pet",
                                  "parameters": [{"name": "id", "in": "path", "required": true, "type": "string"}]}},
           "/pets": {"post": {"operationId": "addPet"}, "get": {"operationId": "unbound"}}}}
```"""


def test_swagger_variant(tmp_path: Path) -> None:
    api = parse(
        tmp_path,
        [
            ("markdown", SPEC),
            "PETS = {}",
            "# operationId: getPet\nprint(1)",
            "# ResponseInfo operationId: getPet\nprint('{}')",
            "# operationId: addPet\nprint(2)",
        ],
    )
    routes = {(r.verb, r.path): r for r in api.routes}  # type: ignore[attr-defined]
    assert set(routes) == {("GET", "/pets/:id"), ("POST", "/pets")}
    assert routes["GET", "/pets/:id"].response_code is not None
    assert routes["GET", "/pets/:id"].operation["summary"] == "One pet"
    assert api.seed.cells == ("PETS = {}",)  # type: ignore[attr-defined]
    assert api.document["info"]["title"] == "Pets"  # type: ignore[attr-defined]


def test_swagger_variant_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no markdown cell holds a Swagger or OpenAPI document"):
        parse(tmp_path, ["# operationId: x\n1"])
    with pytest.raises(SettingsError, match="operationId 'nope' is bound to a cell but not declared"):
        parse(tmp_path, [("markdown", SPEC), "# operationId: nope\n1", "# operationId: addPet\n1"])
