"""The OpenAPI document: valid, describing every route, and true under property-based testing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from portico.app import api_spec, build_app
from portico.settings import Settings
from portico_testing import EXECUTION_PATHS, Server, schemathesis, start_server


def test_the_document_is_valid_openapi() -> None:
    validate(api_spec(Settings()))  # type: ignore[arg-type]


def test_every_route_is_described() -> None:
    """Every route but the pass-through ones (method *: the proxy's and the notebook APIs')."""
    settings = Settings(proxy_entry_points=False)
    spec = api_spec(settings)
    routes = {
        (r.method.lower(), r.resource.canonical)
        for r in build_app(settings).router.routes()
        if r.resource is not None and r.method != "*"
    }
    described = {(method, path) for path, ops in spec["paths"].items() for method in ops if method != "parameters"}
    assert routes - described == set(), "describe these routes in src/portico/api.yaml"
    assert described - routes == set(), "the document describes routes that do not exist"


def test_base_url_is_the_documents_server() -> None:
    assert api_spec(Settings(base_url="/x"))["servers"] == [{"url": "/x"}]


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server("--max-kernels", "2", "--root-dir", str(tmp_path_factory.mktemp("st")))
    yield srv
    srv.stop()


def test_schemathesis_finds_no_5xx_and_no_contradiction(small_server: Server, tmp_path: Path) -> None:
    """Code over HTTP has its own run (tests/execution/test_openapi.py): each one-shot example starts a kernel."""
    spec = small_server.url + "api/spec.json"
    result = schemathesis(spec, small_server.token, tmp_path, 10, "--exclude-path-regex", EXECUTION_PATHS)
    assert result.returncode == 0, result.stdout[-6000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]
    assert small_server.proc.poll() is None
