"""The per-knowledge-base catalog: its name, embedding model, and one row per source document.

SQLite, next to the shard. A document row is marked ``indexed`` (with its content hash) only after
all its chunks are in the store, so a run killed at any moment is simply redone for the documents
that were not finished: that is what makes ingestion resumable.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bubble_desktop.core.kb.types import DocumentInfo

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    hash TEXT,
    chunks INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    added REAL NOT NULL,
    status TEXT NOT NULL,
    error TEXT
);
"""

INDEXED = "indexed"
PENDING = "pending"
FAILED = "failed"


class Catalog:
    """One SQLite file; used only from the knowledge service's owner thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path))
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    # meta -------------------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set(self, **values: str | None) -> None:
        with self._db:
            for k, v in values.items():
                if v is None:
                    self._db.execute("DELETE FROM meta WHERE key=?", (k,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, v))

    # documents --------------------------------------------------------------------------------
    def documents(self) -> list[DocumentInfo]:
        rows = self._db.execute(
            "SELECT doc_id, path, type, chunks, size, added, status, error FROM documents ORDER BY path"
        ).fetchall()
        return [DocumentInfo(*r) for r in rows]

    def states(self) -> dict[str, tuple[str | None, str]]:
        """path -> (hash, status): what ingestion compares against."""
        return {p: (h, s) for p, h, s in self._db.execute("SELECT path, hash, status FROM documents")}

    def totals(self) -> tuple[int, int]:
        docs, chunks = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(chunks), 0) FROM documents WHERE status=?", (INDEXED,)
        ).fetchone()
        return int(docs), int(chunks)

    def begin(self, doc_id: str, path: str, type_: str, size: int) -> None:
        """A document is about to be (re)written: no hash until it is complete."""
        with self._db:
            self._db.execute(
                "INSERT INTO documents(doc_id, path, type, hash, chunks, size, added, status, error) "
                "VALUES (?, ?, ?, NULL, 0, ?, ?, ?, NULL) "
                "ON CONFLICT(doc_id) DO UPDATE SET type=excluded.type, hash=NULL, chunks=0, "
                "size=excluded.size, status=excluded.status, error=NULL",
                (doc_id, path, type_, size, time.time(), PENDING),
            )

    def finish(self, doc_id: str, content_hash: str, chunks: int) -> None:
        with self._db:
            self._db.execute(
                "UPDATE documents SET hash=?, chunks=?, status=?, added=? WHERE doc_id=?",
                (content_hash, chunks, INDEXED, time.time(), doc_id),
            )

    def fail(self, doc_id: str, path: str, type_: str, size: int, reason: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO documents(doc_id, path, type, hash, chunks, size, added, status, error) "
                "VALUES (?, ?, ?, NULL, 0, ?, ?, ?, ?) "
                "ON CONFLICT(doc_id) DO UPDATE SET hash=NULL, chunks=0, size=excluded.size, "
                "status=excluded.status, error=excluded.error",
                (doc_id, path, type_, size, time.time(), FAILED, reason),
            )

    def reset(self, doc_id: str) -> None:
        """A cancelled document: nothing of it stays in the store; the next run redoes it."""
        with self._db:
            self._db.execute(
                "UPDATE documents SET hash=NULL, chunks=0, status=? WHERE doc_id=?", (PENDING, doc_id)
            )

    def remove(self, doc_ids: list[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM documents WHERE doc_id=?", [(d,) for d in doc_ids])

    def clear(self) -> None:
        with self._db:
            self._db.execute("DELETE FROM documents")
