"""Conversations and their messages in SQLite (WAL) at ``Paths.chats_db``.

One connection guarded by a lock, so any thread may call the store. Every change is one short
transaction: a process killed at any moment leaves the database intact. An answer being written
is stored as a row with status ``streaming``; if the process dies before it finishes, the next
open marks that row ``error`` ("interrupted") — at most that answer is lost.
Full-text search uses FTS5 (trigram tokenizer, so Chinese substrings are found too).

An answer can have several versions (Regenerate keeps the earlier ones): the ``messages`` row always
holds the *selected* version, so history, search and export read what the user chose; the other
versions wait in ``message_versions`` and :meth:`ConversationStore.select_version` swaps one in.
Notices shown with an answer (e.g. "web search failed") are saved with it (``messages.notices``).
Databases written before these columns existed are migrated on open (``PRAGMA user_version``).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.errors import ConversationError

log = logging.getLogger(__name__)

MessageStatus = Literal["complete", "stopped", "error", "streaming"]
EXPORT_FORMAT = "bubble-conversation"
EXPORT_VERSION = 1
TITLE_CHARS = 60
INTERRUPTED = "The app closed before this answer finished."
SCHEMA_VERSION = 2  # 1: the first release; 2: messages.notices, messages.version, message_versions

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    title       TEXT NOT NULL DEFAULT '',
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    kb_names    TEXT NOT NULL DEFAULT '[]',
    web         INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    text            TEXT NOT NULL DEFAULT '',
    sources         TEXT NOT NULL DEFAULT '[]',
    sampling        TEXT,
    stats           TEXT,
    status          TEXT NOT NULL DEFAULT 'complete',
    web_used        INTEGER NOT NULL DEFAULT 0,
    created_at      REAL NOT NULL,
    notices         TEXT NOT NULL DEFAULT '[]',
    version         INTEGER NOT NULL DEFAULT 1,
    UNIQUE (conversation_id, seq)
);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages(conversation_id, seq);
"""

# the versions of an answer that are not selected (the selected one is in its ``messages`` row)
_VERSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS message_versions (
    message_id  INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    text        TEXT NOT NULL DEFAULT '',
    sources     TEXT NOT NULL DEFAULT '[]',
    sampling    TEXT,
    stats       TEXT,
    status      TEXT NOT NULL DEFAULT 'complete',
    web_used    INTEGER NOT NULL DEFAULT 0,
    notices     TEXT NOT NULL DEFAULT '[]',
    created_at  REAL NOT NULL,
    PRIMARY KEY (message_id, version)
);
"""

# what a version is made of: the same columns in ``messages`` and ``message_versions``
_VERSION_COLUMNS = ("text", "sources", "sampling", "stats", "status", "web_used", "notices", "created_at")

_TRIGGERS = """
CREATE TRIGGER IF NOT EXISTS messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
"""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float
    kb_names: tuple[str, ...] = ()
    web: bool = False
    message_count: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "kb_names": list(self.kb_names),
            "web": self.web,
            "message_count": self.message_count,
        }


@dataclass(frozen=True)
class StoredMessage:
    id: int
    conversation_id: int
    seq: int
    role: str
    text: str
    status: str = "complete"
    sources: tuple[Source, ...] = ()
    sampling: Mapping[str, Any] | None = None
    stats: Mapping[str, Any] | None = None
    web_used: bool = False
    created_at: float = field(default=0.0)
    notices: tuple[str, ...] = ()  # shown with the answer (web search failed, sources left out...)
    version: int = 1  # which version of the answer this is (1-based)
    version_count: int = 1  # how many versions the answer has (Regenerate adds one)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "seq": self.seq,
            "role": self.role,
            "text": self.text,
            "status": self.status,
            "sources": [s.to_dict() for s in self.sources],
            "sampling": dict(self.sampling) if self.sampling is not None else None,
            "stats": dict(self.stats) if self.stats is not None else None,
            "web_used": self.web_used,
            "created_at": self.created_at,
            "notices": list(self.notices),
            "version": self.version,
            "version_count": self.version_count,
        }


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    title: str
    message_id: int
    role: str
    snippet: str


def title_from(question: str) -> str:
    """A conversation title from its first question: one line, at most TITLE_CHARS characters."""
    line = " ".join(question.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class ConversationStore:
    """Conversations + messages; safe to call from any thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=10000")
            with self._tx():
                self._create_schema()
                self._migrate()
            self._recover_interrupted()
        except sqlite3.DatabaseError as exc:
            raise ConversationError(
                f"The conversation database {self.path} could not be opened ({exc}).",
                "Close other Bubble windows; if the file is damaged, move it aside and restart.",
            ) from exc

    # -- plumbing -------------------------------------------------------------------------------

    def _create_schema(self) -> None:
        for statement in _split_sql(_SCHEMA):
            self._db.execute(statement)
        try:
            self._db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5("
                "text, content='messages', content_rowid='id', tokenize='trigram')"
            )
        except sqlite3.OperationalError:  # SQLite < 3.34 has no trigram tokenizer
            self._db.execute(
                "CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5("
                "text, content='messages', content_rowid='id')"
            )
        for statement in _split_sql(_TRIGGERS):
            self._db.execute(statement)

    def _migrate(self) -> None:
        """Bring a database written by an older Bubble to ``SCHEMA_VERSION`` (columns are only added,
        so an older Bubble can still read it)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(messages)")}
        if "notices" not in have:
            self._db.execute("ALTER TABLE messages ADD COLUMN notices TEXT NOT NULL DEFAULT '[]'")
        if "version" not in have:
            self._db.execute("ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 1")
        self._db.execute(_VERSIONS_SCHEMA)
        if int(self._db.execute("PRAGMA user_version").fetchone()[0]) < SCHEMA_VERSION:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    class _Tx:
        def __init__(self, store: ConversationStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            self.store._db.execute("BEGIN IMMEDIATE")
            return self.store._db

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            try:
                self.store._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
            finally:
                self.store._lock.release()

    def _tx(self) -> ConversationStore._Tx:
        return ConversationStore._Tx(self)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _recover_interrupted(self) -> None:
        with self._tx() as db:
            n = db.execute(
                "UPDATE messages SET status='error', stats=json_object('error', ?, 'finish_reason', 'error') "
                "WHERE status='streaming'",
                (INTERRUPTED,),
            ).rowcount
        if n:
            log.info("marked %d interrupted answer(s) as error", n)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ConversationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- conversations --------------------------------------------------------------------------

    def create_conversation(self, title: str = "", kb_names: Iterable[str] = (), web: bool = False) -> int:
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations(title, created_at, updated_at, kb_names, web) VALUES (?,?,?,?,?)",
                (title_from(title), now, now, json.dumps(list(kb_names), ensure_ascii=False), int(web)),
            )
            return int(cur.lastrowid or 0)

    def _conversation_from(self, row: sqlite3.Row) -> Conversation:
        return Conversation(
            id=row["id"],
            title=row["title"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            kb_names=tuple(json.loads(row["kb_names"] or "[]")),
            web=bool(row["web"]),
            message_count=row["n"] if "n" in row.keys() else 0,
        )

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = self._query(
            "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id=c.id) AS n "
            "FROM conversations c WHERE c.id=?",
            (conversation_id,),
        )
        if not rows:
            raise ConversationError(
                f"There is no conversation {conversation_id}.", "List them with `bubble-cli chats list`."
            )
        return self._conversation_from(rows[0])

    def list_conversations(self, limit: int | None = None) -> list[Conversation]:
        """Newest activity first."""
        rows = self._query(
            "SELECT c.*, (SELECT count(*) FROM messages m WHERE m.conversation_id=c.id) AS n "
            "FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
            (-1 if limit is None else limit,),
        )
        return [self._conversation_from(r) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        self.get_conversation(conversation_id)
        with self._tx() as db:
            db.execute("UPDATE conversations SET title=? WHERE id=?", (title.strip(), conversation_id))

    def update_options(self, conversation_id: int, kb_names: Iterable[str], web: bool) -> None:
        """Remember the knowledge bases and web switch last used in this conversation."""
        with self._tx() as db:
            db.execute(
                "UPDATE conversations SET kb_names=?, web=? WHERE id=?",
                (json.dumps(list(kb_names), ensure_ascii=False), int(web), conversation_id),
            )

    def delete_conversation(self, conversation_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE conversation_id=?", (conversation_id,))
            db.execute("DELETE FROM conversations WHERE id=?", (conversation_id,))

    # -- messages -------------------------------------------------------------------------------

    def add_message(
        self,
        conversation_id: int,
        role: str,
        text: str,
        *,
        status: MessageStatus = "complete",
        sources: Sequence[Source] = (),
        sampling: Mapping[str, Any] | None = None,
        stats: Mapping[str, Any] | None = None,
        web_used: bool = False,
        notices: Sequence[str] = (),
    ) -> int:
        """Append a message; the first user message also names an untitled conversation."""
        now = time.time()
        with self._tx() as db:
            row = db.execute("SELECT title FROM conversations WHERE id=?", (conversation_id,)).fetchone()
            if row is None:
                raise ConversationError(f"There is no conversation {conversation_id}.")
            seq = db.execute(
                "SELECT coalesce(max(seq), -1) + 1 FROM messages WHERE conversation_id=?", (conversation_id,)
            ).fetchone()[0]
            cur = db.execute(
                "INSERT INTO messages(conversation_id, seq, role, text, sources, sampling, stats, status, "
                "web_used, created_at, notices) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    conversation_id,
                    seq,
                    role,
                    text,
                    json.dumps([s.to_dict() for s in sources], ensure_ascii=False),
                    _dumps(dict(sampling) if sampling is not None else None),
                    _dumps(dict(stats) if stats is not None else None),
                    status,
                    int(web_used),
                    now,
                    json.dumps(list(notices), ensure_ascii=False),
                ),
            )
            if role == "user" and not row["title"]:
                db.execute("UPDATE conversations SET title=? WHERE id=?", (title_from(text), conversation_id))
            db.execute("UPDATE conversations SET updated_at=? WHERE id=?", (now, conversation_id))
            return int(cur.lastrowid or 0)

    def save_partial(self, message_id: int, text: str) -> None:
        """Store the text so far of an answer still ``streaming`` (a crash keeps it, marked error)."""
        with self._tx() as db:
            db.execute("UPDATE messages SET text=? WHERE id=? AND status='streaming'", (text, message_id))

    def finish_message(
        self,
        message_id: int,
        text: str,
        status: MessageStatus,
        *,
        stats: Mapping[str, Any] | None = None,
        sources: Sequence[Source] | None = None,
    ) -> None:
        """Store the final text and status of an answer that was started as ``streaming``."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET text=?, status=?, stats=coalesce(?, stats) WHERE id=?",
                (text, status, _dumps(dict(stats) if stats is not None else None), message_id),
            )
            if sources is not None:
                db.execute(
                    "UPDATE messages SET sources=? WHERE id=?",
                    (json.dumps([s.to_dict() for s in sources], ensure_ascii=False), message_id),
                )

    # -- versions of an answer ------------------------------------------------------------------

    def begin_version(
        self,
        message_id: int,
        *,
        sources: Sequence[Source] = (),
        sampling: Mapping[str, Any] | None = None,
        web_used: bool = False,
        notices: Sequence[str] = (),
    ) -> int | None:
        """Start a new version of answer ``message_id`` (Regenerate): the version shown so far is
        kept in ``message_versions`` and the row becomes a new, selected, ``streaming`` version.
        An empty failed or stopped version is overwritten instead of kept. Returns the number of
        the version kept (to restore with :meth:`discard_version`), or None."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM messages WHERE id=?", (message_id,)).fetchone()
            if row is None or row["role"] != "assistant":
                raise ConversationError(f"There is no answer {message_id}.")
            kept: int | None = None
            number = int(row["version"])
            if row["text"].strip() or row["status"] == "complete":
                kept = number
                self._archive(db, row)
                number = (
                    int(
                        db.execute(
                            "SELECT max(version) FROM message_versions WHERE message_id=?", (message_id,)
                        ).fetchone()[0]
                    )
                    + 1
                )
            db.execute(
                "UPDATE messages SET text='', sources=?, sampling=?, stats=NULL, status='streaming', "
                "web_used=?, notices=?, created_at=?, version=? WHERE id=?",
                (
                    json.dumps([s.to_dict() for s in sources], ensure_ascii=False),
                    _dumps(dict(sampling) if sampling is not None else None),
                    int(web_used),
                    json.dumps(list(notices), ensure_ascii=False),
                    time.time(),
                    number,
                    message_id,
                ),
            )
            db.execute(
                "UPDATE conversations SET updated_at=? WHERE id=?", (time.time(), row["conversation_id"])
            )
            return kept

    @staticmethod
    def _archive(db: sqlite3.Connection, row: sqlite3.Row) -> None:
        """Copy the version in a ``messages`` row into ``message_versions``."""
        columns = ", ".join(_VERSION_COLUMNS)
        db.execute(
            f"INSERT OR REPLACE INTO message_versions(message_id, version, {columns}) "
            f"VALUES (?, ?, {', '.join('?' * len(_VERSION_COLUMNS))})",
            (row["id"], row["version"], *(row[c] for c in _VERSION_COLUMNS)),
        )

    def _restore(self, db: sqlite3.Connection, message_id: int, version: int) -> None:
        """Move a kept version into the ``messages`` row (which must be archived or dropped first)."""
        kept = db.execute(
            "SELECT * FROM message_versions WHERE message_id=? AND version=?", (message_id, version)
        ).fetchone()
        if kept is None:
            raise ConversationError(f"Answer {message_id} has no version {version}.")
        assignments = ", ".join(f"{c}=?" for c in _VERSION_COLUMNS)
        db.execute(
            f"UPDATE messages SET {assignments}, version=? WHERE id=?",
            (*(kept[c] for c in _VERSION_COLUMNS), version, message_id),
        )
        db.execute("DELETE FROM message_versions WHERE message_id=? AND version=?", (message_id, version))

    def select_version(self, message_id: int, version: int) -> StoredMessage:
        """Show version ``version`` of an answer: it is what history (the next turn's context),
        search and export read from now on. Returns the message as now selected."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM messages WHERE id=?", (message_id,)).fetchone()
            if row is None:
                raise ConversationError(f"There is no message {message_id}.")
            if row["status"] == "streaming":
                raise ConversationError("This answer is still being written.", "Wait until it is done.")
            if int(row["version"]) != version:
                self._archive(db, row)
                self._restore(db, message_id, version)
        return self.get_message(message_id)

    def discard_version(self, message_id: int, restore: int) -> None:
        """Drop the version in the row (e.g. a regenerated answer stopped before its first word)
        and select version ``restore`` again."""
        with self._tx() as db:
            self._restore(db, message_id, restore)

    def versions(self, message_id: int) -> list[StoredMessage]:
        """Every version of a message, oldest first (one item for a message never regenerated)."""
        current = self.get_message(message_id)
        rows = self._query("SELECT * FROM message_versions WHERE message_id=?", (message_id,))
        kept = [replace(current, **self._version_fields(r), version=int(r["version"])) for r in rows]
        return sorted([current, *kept], key=lambda m: m.version)

    @staticmethod
    def _version_fields(row: sqlite3.Row) -> dict[str, Any]:
        return {
            "text": row["text"],
            "status": row["status"],
            "sources": tuple(Source.from_dict(d) for d in json.loads(row["sources"] or "[]")),
            "sampling": json.loads(row["sampling"]) if row["sampling"] else None,
            "stats": json.loads(row["stats"]) if row["stats"] else None,
            "web_used": bool(row["web_used"]),
            "created_at": row["created_at"],
            "notices": tuple(json.loads(row["notices"] or "[]")),
        }

    def _message_from(self, row: sqlite3.Row) -> StoredMessage:
        return StoredMessage(
            id=row["id"],
            conversation_id=row["conversation_id"],
            seq=row["seq"],
            role=row["role"],
            text=row["text"],
            status=row["status"],
            sources=tuple(Source.from_dict(d) for d in json.loads(row["sources"] or "[]")),
            sampling=json.loads(row["sampling"]) if row["sampling"] else None,
            stats=json.loads(row["stats"]) if row["stats"] else None,
            web_used=bool(row["web_used"]),
            created_at=row["created_at"],
            notices=tuple(json.loads(row["notices"] or "[]")),
            version=int(row["version"]),
            version_count=1 + int(row["kept"]) if "kept" in row.keys() else 1,
        )

    _SELECT = (
        "SELECT m.*, (SELECT count(*) FROM message_versions v WHERE v.message_id=m.id) AS kept "
        "FROM messages m "
    )

    def messages(self, conversation_id: int) -> list[StoredMessage]:
        """The conversation's messages in order; an answer with versions as its *selected* version
        (what the user sees, the model gets as history, and an export should write)."""
        rows = self._query(self._SELECT + "WHERE m.conversation_id=? ORDER BY m.seq", (conversation_id,))
        return [self._message_from(r) for r in rows]

    def get_message(self, message_id: int) -> StoredMessage:
        rows = self._query(self._SELECT + "WHERE m.id=?", (message_id,))
        if not rows:
            raise ConversationError(f"There is no message {message_id}.")
        return self._message_from(rows[0])

    def delete_from(self, message: StoredMessage) -> int:
        """Delete ``message`` and everything after it in its conversation; returns how many went."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM messages WHERE conversation_id=? AND seq>=?",
                (message.conversation_id, message.seq),
            ).rowcount

    def delete_after(self, message: StoredMessage) -> int:
        """Delete everything after ``message`` in its conversation."""
        with self._tx() as db:
            return db.execute(
                "DELETE FROM messages WHERE conversation_id=? AND seq>?",
                (message.conversation_id, message.seq),
            ).rowcount

    def edit_message(self, message_id: int, new_text: str) -> StoredMessage:
        """Replace a user message's text and drop what followed it (it is answered again)."""
        message = self.get_message(message_id)
        if message.role != "user":
            raise ConversationError("Only your own messages can be edited.", "Regenerate an answer instead.")
        with self._tx() as db:
            db.execute(
                "DELETE FROM messages WHERE conversation_id=? AND seq>?",
                (message.conversation_id, message.seq),
            )
            db.execute("UPDATE messages SET text=? WHERE id=?", (new_text, message_id))
            db.execute(
                "UPDATE conversations SET updated_at=? WHERE id=?", (time.time(), message.conversation_id)
            )
            if message.seq == 0:
                db.execute(
                    "UPDATE conversations SET title=? WHERE id=?",
                    (title_from(new_text), message.conversation_id),
                )
        return self.get_message(message_id)

    def answer_to(self, question: StoredMessage) -> StoredMessage | None:
        """The assistant message right after ``question``, if any."""
        rows = self._query(
            self._SELECT + "WHERE m.conversation_id=? AND m.seq=?",
            (question.conversation_id, question.seq + 1),
        )
        if rows and rows[0]["role"] == "assistant":
            return self._message_from(rows[0])
        return None

    def last_user_message(self, conversation_id: int) -> StoredMessage:
        rows = self._query(
            self._SELECT + "WHERE m.conversation_id=? AND m.role='user' ORDER BY m.seq DESC LIMIT 1",
            (conversation_id,),
        )
        if not rows:
            raise ConversationError("This conversation has no question to answer again.")
        return self._message_from(rows[0])

    # -- search ---------------------------------------------------------------------------------

    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing ``text`` (FTS5 trigram index; queries under 3 characters scan instead)."""
        needle = text.strip()
        if not needle:
            return []
        rows: list[sqlite3.Row] | None = None
        if len(needle) >= 3:
            phrase = '"' + needle.replace('"', '""') + '"'
            try:
                rows = self._query(
                    "SELECT m.id, m.conversation_id, m.role, m.text, c.title "
                    "FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
                    "JOIN conversations c ON c.id = m.conversation_id "
                    "WHERE messages_fts MATCH ? ORDER BY c.updated_at DESC, m.seq LIMIT ?",
                    (phrase, limit),
                )
            except sqlite3.OperationalError as exc:
                log.info("FTS query failed (%s); falling back to a scan", exc)
        if rows is None:
            escaped = needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._query(
                "SELECT m.id, m.conversation_id, m.role, m.text, c.title FROM messages m "
                "JOIN conversations c ON c.id = m.conversation_id WHERE m.text LIKE ? ESCAPE '\\' "
                "ORDER BY c.updated_at DESC, m.seq LIMIT ?",
                (f"%{escaped}%", limit),
            )
        return [
            SearchHit(r["conversation_id"], r["title"], r["id"], r["role"], _snippet(r["text"], needle))
            for r in rows
        ]

    # -- export / import ------------------------------------------------------------------------

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        conversation = self.get_conversation(conversation_id)
        return {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "conversation": conversation.to_dict(),
            "messages": [m.to_dict() for m in self.messages(conversation_id)],
        }

    def export_markdown(self, conversation_id: int) -> str:
        """Markdown with each answer's sources as footnotes (citations [n] become [^k-n])."""
        from bubble_desktop.core.chat.markdown_export import footnote_citations

        conversation = self.get_conversation(conversation_id)
        lines = [f"# {conversation.title or 'Conversation'}", ""]
        meta = [time.strftime("%Y-%m-%d %H:%M", time.localtime(conversation.created_at))]
        if conversation.kb_names:
            meta.append("knowledge bases: " + ", ".join(conversation.kb_names))
        if conversation.web:
            meta.append("web search on")
        lines += ["*" + " · ".join(meta) + "*", ""]
        for k, message in enumerate(self.messages(conversation_id), start=1):
            who = {"user": "You", "assistant": "Bubble", "system": "System"}.get(message.role, message.role)
            # Citations become footnotes outside code only; a fence left open is closed.
            text = footnote_citations(message.text, k, {s.index for s in message.sources})
            note = ""
            if message.status == "stopped":
                note = " *(stopped)*"
            elif message.status == "error":
                note = " *(failed)*"
            if message.web_used:
                note += " *(used web search)*"
            lines += [f"**{who}:**{note}", "", text, ""]
            for source in message.sources:
                where = source.url if source.kind == "web" else source.where
                extra = f", {source.date}" if source.date else ""
                lines.append(f"[^{k}-{source.index}]: {source.title} — {where}{extra}")
            if message.sources:
                lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def import_json(self, data: Mapping[str, Any]) -> int:
        """Add an exported conversation as a new one; returns its id."""
        if data.get("format") != EXPORT_FORMAT or not isinstance(data.get("messages"), list):
            raise ConversationError(
                "This file is not a Bubble conversation export.", "Export one with `bubble-cli chats export`."
            )
        if int(data.get("version", 0)) > EXPORT_VERSION:
            raise ConversationError(
                "This conversation was exported by a newer Bubble.", "Update Bubble first."
            )
        meta = data.get("conversation") or {}
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations(title, created_at, updated_at, kb_names, web) VALUES (?,?,?,?,?)",
                (
                    str(meta.get("title", "")),
                    float(meta.get("created_at", now)),
                    float(meta.get("updated_at", now)),
                    json.dumps(list(meta.get("kb_names", [])), ensure_ascii=False),
                    int(bool(meta.get("web", False))),
                ),
            )
            new_id = int(cur.lastrowid or 0)
            for seq, m in enumerate(data["messages"]):
                role = m.get("role")
                if role not in ("system", "user", "assistant"):
                    raise ConversationError(f"Message {seq + 1} in the file has an unknown role {role!r}.")
                status = m.get("status", "complete")
                db.execute(
                    "INSERT INTO messages(conversation_id, seq, role, text, sources, sampling, stats, "
                    "status, web_used, created_at, notices) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        new_id,
                        seq,
                        role,
                        str(m.get("text", "")),
                        json.dumps(
                            [Source.from_dict(s).to_dict() for s in m.get("sources") or []],
                            ensure_ascii=False,
                        ),
                        _dumps(m.get("sampling")),
                        _dumps(m.get("stats")),
                        "error" if status == "streaming" else status,
                        int(bool(m.get("web_used", False))),
                        float(m.get("created_at", now)),
                        json.dumps([str(n) for n in m.get("notices") or []], ensure_ascii=False),
                    ),
                )
        return new_id

    def integrity_ok(self) -> bool:
        return bool(self._query("PRAGMA integrity_check")[0][0] == "ok")


def _snippet(text: str, needle: str, around: int = 40) -> str:
    """The text around the first match, the match in [brackets]."""
    at = text.lower().find(needle.lower())
    if at < 0:
        return text[: 2 * around]
    start, end = max(0, at - around), min(len(text), at + len(needle) + around)
    body = f"{text[start:at]}[{text[at : at + len(needle)]}]{text[at + len(needle) : end]}"
    return ("…" if start else "") + " ".join(body.split()) + ("…" if end < len(text) else "")


def _split_sql(script: str) -> list[str]:
    """Split the schema into statements (trigger bodies contain ';')."""
    out: list[str] = []
    buf: list[str] = []
    depth = 0
    for line in script.strip().splitlines():
        buf.append(line)
        upper = line.strip().upper()
        if upper.startswith("CREATE TRIGGER"):
            depth = 1
        if depth and upper == "END;":
            depth = 0
        if not depth and line.rstrip().endswith(";"):
            out.append("\n".join(buf))
            buf = []
    return out
