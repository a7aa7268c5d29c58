"""Where the flows keep their data: one SQLite file (demo orders, cases and their history).

`FLOWS_DB_PATH` chooses the file; the default is `<repo>/var/flows.sqlite3`. Every call
opens its own short-lived connection, so the store is safe to use from worker threads
(`asyncio.to_thread`) and from several processes (the action server and the gateway).
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parent.parent


def db_path() -> Path:
    configured = os.environ.get("FLOWS_DB_PATH")
    path = Path(configured) if configured else REPO_ROOT / "var" / "flows.sqlite3"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit-off mode: the block is one transaction, committed on exit."""
    conn = sqlite3.connect(str(path), timeout=15)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute("PRAGMA busy_timeout = 15000")
        conn.execute("PRAGMA foreign_keys = ON")
        yield conn
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.close()


def enable_wal(path: Path) -> None:
    with connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
