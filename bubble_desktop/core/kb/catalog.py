"""The per-knowledge-base catalog: its name, embedding model, and one row per source document.

SQLite, next to the shard. A document row is marked ``indexed`` (with its content hash) only after
all its chunks are in the store, so a run killed at any moment is simply redone for the documents
that were not finished: that is what makes ingestion resumable.
"""

from __future__ import annotations

import hashlib
import os
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
-- documents whose chunks are being written now (doc_id, version being written): what a run
-- killed mid-document left behind is found here and repaired when the base is next opened
CREATE TABLE IF NOT EXISTS writing (doc_id TEXT PRIMARY KEY, hash TEXT NOT NULL);
"""
_COLUMNS = "doc_id, path, type, hash, chunks, size, added, status, error"


def doc_id_for(path: str | os.PathLike[str]) -> str:
    """Stable id of a source file: a hash of its absolute path."""
    return hashlib.sha1(os.path.abspath(os.fspath(path)).encode("utf-8", "surrogatepass")).hexdigest()[:20]


INDEXED = "indexed"
PENDING = "pending"
FAILED = "failed"
REMOVING = "removing"  # being removed: hidden, and finished on the next open if the run was killed


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
            "SELECT doc_id, path, type, chunks, size, added, status, error FROM documents "
            "WHERE status != ? ORDER BY path",
            (REMOVING,),
        ).fetchall()
        return [DocumentInfo(*r) for r in rows]

    def states(self) -> dict[str, tuple[str | None, str]]:
        """path -> (hash, status): what ingestion compares against."""
        return {
            p: (h, s)
            for p, h, s in self._db.execute(
                "SELECT path, hash, status FROM documents WHERE status != ?", (REMOVING,)
            )
        }

    def row(self, doc_id: str) -> tuple[object, ...] | None:
        """The whole row of a document (for :meth:`put_rows` into another catalog)."""
        row = self._db.execute(f"SELECT {_COLUMNS} FROM documents WHERE doc_id=?", (doc_id,)).fetchone()
        return tuple(row) if row else None

    def rows(self) -> list[tuple[object, ...]]:
        return [
            tuple(r)
            for r in self._db.execute(f"SELECT {_COLUMNS} FROM documents WHERE status != ?", (REMOVING,))
        ]

    def put_rows(self, rows: list[tuple[object, ...]]) -> None:
        with self._db:
            self._db.executemany(
                f"INSERT OR REPLACE INTO documents({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows
            )

    def replace_all(self, rows: list[tuple[object, ...]], **meta: str | None) -> None:
        """Swap in another catalog's documents and meta values in one transaction."""
        with self._db:
            self._db.execute("DELETE FROM documents")
            self._db.execute("DELETE FROM writing")
            self._db.executemany(f"INSERT INTO documents({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)", rows)
            for k, v in meta.items():
                if v is None:
                    self._db.execute("DELETE FROM meta WHERE key=?", (k,))
                else:
                    self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (k, v))

    # writing / removing: the crash-repair journal ---------------------------------------------
    def start_writing(self, doc_id: str, content_hash: str) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO writing(doc_id, hash) VALUES (?, ?)", (doc_id, content_hash)
            )

    def end_writing(self, doc_id: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM writing WHERE doc_id=?", (doc_id,))

    def writing(self) -> list[tuple[str, str]]:
        return [(d, h) for d, h in self._db.execute("SELECT doc_id, hash FROM writing")]

    def status_hash(self, doc_id: str) -> tuple[str, str | None] | None:
        row = self._db.execute("SELECT status, hash FROM documents WHERE doc_id=?", (doc_id,)).fetchone()
        return (row[0], row[1]) if row else None

    def mark_removing(self, doc_ids: list[str]) -> None:
        with self._db:
            self._db.executemany(
                "UPDATE documents SET status=? WHERE doc_id=?", [(REMOVING, d) for d in doc_ids]
            )

    def removing(self) -> list[str]:
        return [d for (d,) in self._db.execute("SELECT doc_id FROM documents WHERE status=?", (REMOVING,))]

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

    def remove(self, doc_ids: list[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM documents WHERE doc_id=?", [(d,) for d in doc_ids])
