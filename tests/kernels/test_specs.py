"""kernels/specs.py: kernelspecs as the REST API shows them, and their resource files, confined."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portico.errors import NotFound, PorticoError
from portico.kernels.specs import Specs


@pytest.fixture
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Specs:
    spec = tmp_path / "kernels" / "demo"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps({"argv": ["python", "-f", "{connection_file}"], "display_name": "Demo", "language": "python"})
    )
    (spec / "logo-64x64.png").write_bytes(b"\x89PNG")
    (spec / "kernel.js").write_text("// js")
    (tmp_path / "secret.txt").write_text("not a resource")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    return Specs("/base/", "demo")


def test_a_spec_and_its_resources_by_url(specs: Specs) -> None:
    model = specs.one("demo")
    assert model["spec"]["display_name"] == "Demo"
    assert model["resources"] == {
        "kernel.js": "/base/kernelspecs/demo/kernel.js",
        "logo-64x64": "/base/kernelspecs/demo/logo-64x64.png",
    }
    assert specs.all()["default"] == "demo" and "demo" in specs.all()["kernelspecs"]


def test_an_unknown_spec_names_the_installed_ones(specs: Specs) -> None:
    with pytest.raises(NotFound, match=r"No such kernelspec: 'nope'; installed: .*demo"):
        specs.get("nope")


@pytest.mark.parametrize(
    ("name", "status"),
    [("../secret.txt", 404), ("..", 403), ("missing.js", 404), ("sub/kernel.js", 404), (".hidden", 404), ("a\0b", 400)],
)
def test_only_plain_files_in_the_spec_directory_are_resources(specs: Specs, name: str, status: int) -> None:
    with pytest.raises(PorticoError) as caught:
        specs.resource("demo", name)
    assert caught.value.status == status


def test_a_resource_file(specs: Specs) -> None:
    assert specs.resource("demo", "kernel.js").read_text() == "// js"
