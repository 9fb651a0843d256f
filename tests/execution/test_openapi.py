"""schemathesis against code over HTTP's part of the OpenAPI document (the execution routes, the
one-shot runs and the MCP endpoint), on a server with a warm pool: each one-shot example runs."""

from __future__ import annotations

from pathlib import Path

from portico_testing import EXECUTION_PATHS, schemathesis, start_server


def test_schemathesis_finds_no_5xx_and_no_contradiction(tmp_path: Path) -> None:
    srv = start_server("--pool-size", "2", "--one-shot-timeout", "5", "--root-dir", str(tmp_path))
    try:
        spec = srv.url + "api/spec.json"
        result = schemathesis(spec, srv.token, tmp_path, 5, "--include-path-regex", EXECUTION_PATHS)
        assert result.returncode == 0, result.stdout[-6000:]
        assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-3000:]
        assert "Selected: 7/" in result.stdout, result.stdout[-3000:]  # the five routes' seven operations
        assert srv.proc.poll() is None
    finally:
        srv.stop()
