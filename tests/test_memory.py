"""Freed memory goes back to the system (portico/memory.py)."""

from __future__ import annotations

from pathlib import Path

from portico.memory import MemoryTrim
from portico_testing import eventually


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_memory_freed_after_a_burst_is_returned_while_the_server_runs() -> None:
    """A burst of 2 KB buffers (malloc's, as ZeroMQ's and large messages' are) freed but for one
    in a hundred: glibc keeps the pages; the trim component gives them back."""
    trim = MemoryTrim(0.05)
    assert trim.trim is not None, "glibc's malloc_trim (Debian, CI)"
    burst = [bytes(2048) for _ in range(150_000)]
    kept = burst[::100]
    high = rss_mb()
    del burst
    assert rss_mb() > high - 100, "glibc kept the freed pages (nothing to show otherwise)"
    await trim.start_up()
    try:
        await eventually(lambda: rss_mb() < high - 150, "the freed memory's return")
    finally:
        await trim.end()
    assert len(kept) == 1500
    assert MemoryTrim(0).trim is None  # memory_trim_interval 0: off
