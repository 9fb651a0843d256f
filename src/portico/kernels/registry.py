"""The persisted state of the kernels Portico runs: an SQLite database in the state directory.

Written when a kernel starts, restarts, is listed and ends, and when the server stops leaving
kernels running (keep_kernels); read once, at start-up, to re-attach to those kernels or end
them (manager.Kernels.adopt).  Nothing else writes it.  One server at a time uses a state
directory: it holds an exclusive lock on it while it runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SettingsError

SCHEMA = """
create table if not exists kernels (
    id text primary key,
    name text not null,
    listed integer not null,          -- 1: in the REST API's registry; 0: warm or private (ended at start-up)
    connection text not null,         -- jupyter_client's connection info, as JSON
    provisioner text not null,        -- what the provisioner needs to find its kernel again, as JSON
    created real not null,
    last_activity real not null,
    journal text                      -- when the server stopped cleanly: the output journal's next
                                      -- number and the sessions' last numbers, as JSON
)
"""


class StateDirInUse(SettingsError):
    """Another Portico holds the state directory."""


@dataclass
class Entry:
    id: str
    name: str
    listed: bool
    connection: dict[str, Any]
    provisioner: dict[str, Any]
    created: float
    last_activity: float
    journal: dict[str, Any] | None = None  # {"next_seq": int, "positions": {session_id: seq}}


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, default=lambda o: o.decode() if isinstance(o, bytes) else str(o))


class Registry:
    def __init__(self, state_dir: str) -> None:
        directory = Path(state_dir)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory
        self._lock = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise StateDirInUse(
                f"state_dir {directory} is in use by another Portico; give this one a state_dir of its own"
            ) from None
        self._db = sqlite3.connect(directory / "kernels.sqlite3", isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute(SCHEMA)

    def put(self, entry: Entry) -> None:
        self._db.execute(
            "insert or replace into kernels values (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.id,
                entry.name,
                int(entry.listed),
                _json(entry.connection),
                _json(entry.provisioner),
                entry.created,
                entry.last_activity,
                None if entry.journal is None else _json(entry.journal),
            ),
        )

    def update(self, kernel_id: str, **fields: Any) -> None:
        """Change some fields of one entry (listed, last_activity, journal)."""
        values = [_json(v) if isinstance(v, dict) else v for v in fields.values()]
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self._db.execute(f"update kernels set {assignments} where id = ?", (*values, kernel_id))  # noqa: S608

    def remove(self, kernel_id: str) -> None:
        self._db.execute("delete from kernels where id = ?", (kernel_id,))

    def entries(self) -> list[Entry]:
        rows = self._db.execute("select * from kernels order by created").fetchall()
        return [
            Entry(r[0], r[1], bool(r[2]), json.loads(r[3]), json.loads(r[4]), r[5], r[6], r[7] and json.loads(r[7]))
            for r in rows
        ]

    def close(self) -> None:
        self._db.close()
        os.close(self._lock)
