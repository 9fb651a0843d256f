"""The benchmark's own code keeps working (timings are never asserted: bench/run measures)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_portico_and_direct(tmp_path: Path) -> None:
    out = tmp_path / "results.md"
    result = subprocess.run(
        [sys.executable, "bench/bench.py", "start (cold)", "start (warm pool)", "rtt", "notebook (pool 1)", "--reps", "1",
         "--only", "Portico,direct", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "BENCH_RTT_N": "30", "BENCH_NOTEBOOK_N": "40"})
    assert result.returncode == 0, result.stderr[-3000:]
    tables = out.read_text()
    for row in ("| direct ZeroMQ |", "| Portico (v1) |", "| Portico (json) |", "**start (warm pool)**", "**notebook (pool 1)**"):
        assert row in tables
