"""The output journal of one kernel: every iopub message, numbered, bounded by bytes and age.

Sequence numbers start at 1 and have no holes; eviction only ever removes the oldest
entries, so what is kept is always one contiguous range first..next-1.  The byte bound counts
what an entry costs in memory (its parts and the Python objects holding them), so that
journal_max_bytes bounds what a kernel's journal takes.
"""

from __future__ import annotations

import time
from collections import deque


def size_of(parts: list[bytes]) -> int:
    """Bytes an entry holds: its parts, and about what CPython spends on the objects (measured:
    ~350 bytes for a message's four parts)."""
    return sum(map(len, parts)) + 150 + 50 * len(parts)


class Journal:
    def __init__(self, max_bytes: int, max_age: float) -> None:
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.next_seq = 1
        self.bytes = 0
        self._entries: deque[tuple[float, int, list[bytes]]] = deque()  # (time, size, parts)

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still kept (next_seq when the journal is empty)."""
        return self.next_seq - len(self._entries)

    def append(self, parts: list[bytes]) -> int:
        seq = self.next_seq
        self.next_seq += 1
        if self.max_bytes <= 0:
            return seq
        now = time.monotonic()
        size = size_of(parts)
        self._entries.append((now, size, parts))
        self.bytes += size
        self._evict(now)
        return seq

    def _evict(self, now: float) -> None:
        entries = self._entries
        while entries and (self.bytes > self.max_bytes or now - entries[0][0] > self.max_age):
            self.bytes -= entries.popleft()[1]

    def get(self, seq: int) -> list[bytes] | None:
        """The parts of message seq, or None when it was evicted or does not exist yet."""
        self._evict(time.monotonic())
        index = seq - self.first_seq
        if 0 <= index < len(self._entries):
            return self._entries[index][2]
        return None
