"""The real @jupyterlab/services client (Node) against Portico, over both protocols."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from portico_testing import Server
from portico.kernels.wire import V1_PROTOCOL

HERE = Path(__file__).parent


@pytest.mark.parametrize("mode", ["v1", "json"])
def test_jupyterlab_services_client(subprocess_server: Server, mode: str) -> None:
    server = subprocess_server
    assert (HERE / "node_modules" / "@jupyterlab" / "services").is_dir(), "run scripts/setup --test"
    result = subprocess.run(["node", "scenario.mjs", server.url, server.token, mode], cwd=HERE,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["protocols"] == ([V1_PROTOCOL] if mode == "v1" else [""])
    assert found["stream"] == "hi\n"
    assert found["execute_result"] == "42"
    assert found["png"].startswith("iVBORw0KGgo")
    assert (found["error"], found["error_reply"]) == ("ZeroDivisionError", "error")
    assert (found["prompt"], found["input"]) == ("name? ", "got Ada\n")
    assert found["second_saw"] == ["status", "execute_input", "stream", "status"]
    assert found["second_text"] == "shared\n"
    assert found["interrupt_ename"] == "KeyboardInterrupt" and found["interrupt_ms"] < 5000
    assert found["after_restart"] == "NameError"
    assert found["listed"] and not found["listed_after_shutdown"]
