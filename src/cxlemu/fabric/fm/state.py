"""The fabric manager's database: ``racks/RACK/fm/fm.sqlite``.

Tables: ``hosts`` (name, appliance, head), ``devices`` (each appliance's
capacity, free bytes, heads and extents as last seen), ``allocations`` (what each host
holds: tag, bytes, shared, dax, hpa, extents), ``requests`` (every add,
release and share, with its state: pending, done, failed, refused, timeout,
reconciled), ``history`` (one row per finished operation), ``samples``
(pool capacity over time, for the web page) and ``events`` (capacity
warnings).  Every change is one SQLite transaction (WAL journal, synchronous
NORMAL): a killed FM leaves either the state before or after it, never half.
The devices stay the truth for who owns what; on start the FM reconciles the
database from them (core.py).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (name TEXT PRIMARY KEY, appliance TEXT NOT NULL, head INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY, capacity INTEGER NOT NULL, free INTEGER NOT NULL, heads TEXT NOT NULL,
    extents TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS allocations (
    host TEXT NOT NULL, tag TEXT NOT NULL, tag_uuid TEXT NOT NULL, appliance TEXT NOT NULL,
    bytes INTEGER NOT NULL, shared INTEGER NOT NULL, dax TEXT, hpa INTEGER, mode TEXT,
    extents TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (host, tag));
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL, host TEXT, tag TEXT, bytes INTEGER,
    state TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '', ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, op TEXT NOT NULL, host TEXT, tag TEXT,
    bytes INTEGER, result TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS samples (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, free INTEGER NOT NULL, total INTEGER NOT NULL,
    per_host TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, level TEXT NOT NULL, message TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1);
"""


class FmDb:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        # one connection for the process (closing the last connection of a WAL
        # database checkpoints it: costly on every call)
        self.conn = self.connect()
        self.conn.executescript(SCHEMA)

    def connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        c.row_factory = sqlite3.Row
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("PRAGMA synchronous=NORMAL")     # WAL: durable against a killed FM (not a power cut)
        return c

    @contextlib.contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction: committed at the end, rolled back on error."""
        with self.lock:
            c = self.conn
            try:
                c.execute("BEGIN IMMEDIATE")
                yield c
                c.execute("COMMIT")
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    def query(self, sql: str, *args) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.conn.execute(sql, args)]

    def close(self) -> None:
        self.conn.close()

    # ---- helpers --------------------------------------------------------------------------------------
    def allocations(self, host: str | None = None) -> list[dict]:
        if host is None:
            rows = self.query("SELECT * FROM allocations ORDER BY host, seq")
        else:
            rows = self.query("SELECT * FROM allocations WHERE host = ? ORDER BY seq", host)
        for r in rows:
            r["extents"] = json.loads(r["extents"])
            r["shared"] = bool(r["shared"])
        return rows

    @staticmethod
    def history(c: sqlite3.Connection, op: str, host: str | None, tag: str | None, nbytes: int | None,
                result: str, detail: str = "") -> None:
        c.execute("INSERT INTO history (ts, op, host, tag, bytes, result, detail) VALUES (?,?,?,?,?,?,?)",
                  (time.time(), op, host, tag, nbytes, result, detail))

    @staticmethod
    def new_request(c: sqlite3.Connection, op: str, host: str | None, tag: str | None, nbytes: int | None) -> int:
        cur = c.execute("INSERT INTO requests (op, host, tag, bytes, state, ts) VALUES (?,?,?,?,?,?)",
                        (op, host, tag, nbytes, "pending", time.time()))
        return int(cur.lastrowid)

    @staticmethod
    def finish_request(c: sqlite3.Connection, rid: int, state: str, detail: str = "") -> None:
        c.execute("UPDATE requests SET state = ?, detail = ? WHERE id = ?", (state, detail, rid))
