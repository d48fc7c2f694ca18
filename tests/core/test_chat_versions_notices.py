"""Answer versions (Regenerate keeps the earlier ones), notices saved with answers, and the
migration of a database written before either existed."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from bubble_desktop.core.chat.service import ChatService
from bubble_desktop.core.chat.store import SCHEMA_VERSION, ConversationStore
from bubble_desktop.core.errors import ConversationError
from bubble_desktop.core.paths import Paths
from bubble_desktop.core.settings import Settings
from bubble_desktop.core.web.search import DdgsSearcher, SearchRequest
from tests.core.test_chat_doubles import WordModel

# the schema of the first release, before notices and versions
OLD_SCHEMA = """
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
    updated_at REAL NOT NULL, kb_names TEXT NOT NULL DEFAULT '[]', web INTEGER NOT NULL DEFAULT 0);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL, role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    text TEXT NOT NULL DEFAULT '', sources TEXT NOT NULL DEFAULT '[]', sampling TEXT, stats TEXT,
    status TEXT NOT NULL DEFAULT 'complete', web_used INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL, UNIQUE (conversation_id, seq));
INSERT INTO conversations VALUES (1, 'Old chat', 1.0, 2.0, '[]', 0);
INSERT INTO messages(conversation_id, seq, role, text, created_at)
    VALUES (1, 0, 'user', 'Old question?', 1.0);
INSERT INTO messages(conversation_id, seq, role, text, created_at)
    VALUES (1, 1, 'assistant', 'Old answer.', 1.5);
"""


@pytest.fixture
def store(tmp_path: Path):
    with ConversationStore(tmp_path / "chats.sqlite3") as s:
        yield s


def _settings() -> Settings:
    s = Settings()
    s.sampling = s.sampling.model_copy(update={"temperature": 0.0})
    return s


class FailingProvider:
    def search(self, request: SearchRequest) -> list[dict[str, object]]:
        raise RuntimeError("network is unreachable")


def test_web_notice_is_saved_with_the_answer(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, DdgsSearcher(FailingProvider()), store)
    answer = svc.ask(WordModel("Without the web."), "News about Zorblat?", _settings(), web=True)
    answer.run()
    assert answer.notices
    saved = store.get_message(answer.message_id)
    assert saved.notices == answer.notices
    # and it goes out with an export and back in with an import
    data = json.loads(json.dumps(store.export_json(answer.conversation_id)))
    assert data["messages"][1]["notices"] == list(answer.notices)
    copy = store.import_json(data)
    assert store.messages(copy)[1].notices == answer.notices


def test_an_old_database_is_migrated_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    with ConversationStore(path) as store:
        question, answer = store.messages(1)
        assert (question.text, answer.text) == ("Old question?", "Old answer.")
        assert answer.notices == () and (answer.version, answer.version_count) == (1, 1)
        # the new columns work on the migrated file
        store.add_message(1, "user", "New question?")
        mid = store.add_message(1, "assistant", "New.", notices=["Web search failed."])
        assert store.get_message(mid).notices == ("Web search failed.",)
        store.begin_version(answer.id)
        store.finish_message(answer.id, "Old answer, again.", "complete")
        assert [v.text for v in store.versions(answer.id)] == ["Old answer.", "Old answer, again."]
    with ConversationStore(path) as store:  # opening it again changes nothing
        assert store.get_message(mid).notices == ("Web search failed.",)
        assert store.get_message(answer.id).version_count == 2
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


def test_regenerate_keeps_versions_and_history_uses_the_selected_one(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    first = svc.ask(WordModel("Paris."), "Capital of France?", _settings())
    first.run()
    again = svc.regenerate(WordModel("Paris, on the Seine."), first.conversation_id, _settings())
    again.run()
    assert again.message_id == first.message_id  # a new version of the same answer
    shown = store.get_message(first.message_id)
    assert (shown.text, shown.version, shown.version_count) == ("Paris, on the Seine.", 2, 2)
    assert [(v.version, v.text) for v in store.versions(first.message_id)] == [
        (1, "Paris."),
        (2, "Paris, on the Seine."),
    ]
    # flip back to the first version: it is what the conversation shows and the model gets next
    picked = store.select_version(first.message_id, 1)
    assert (picked.text, picked.version, picked.version_count) == ("Paris.", 1, 2)
    assert [m.text for m in store.messages(first.conversation_id)] == ["Capital of France?", "Paris."]
    model = WordModel("About two million.")
    svc.ask(model, "How many people live there?", _settings(), conversation_id=first.conversation_id).run()
    assert [m.content for m in model.prompts[0][1:]] == [
        "Capital of France?",
        "Paris.",
        "How many people live there?",
    ]
    # versions survive a reopen; search finds the selected text only
    store.select_version(first.message_id, 2)
    assert [h.message_id for h in store.search("Seine")] == [first.message_id]
    with pytest.raises(ConversationError):
        store.select_version(first.message_id, 7)


def test_a_third_version_after_flipping_back_and_a_stopped_empty_one_is_dropped(
    store: ConversationStore,
) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    first = svc.ask(WordModel("One."), "q?", _settings())
    first.run()
    svc.regenerate(WordModel("Two."), first.conversation_id, _settings()).run()
    store.select_version(first.message_id, 1)
    svc.regenerate(WordModel("Three."), first.conversation_id, _settings()).run()
    assert [(v.version, v.text) for v in store.versions(first.message_id)] == [
        (1, "One."),
        (2, "Two."),
        (3, "Three."),
    ]
    # stopped before its first word (e.g. a queued regenerate cancelled): the version shown before stays
    store.select_version(first.message_id, 2)
    cancel = threading.Event()
    cancel.set()
    svc.regenerate(WordModel("never"), first.conversation_id, _settings(), cancel=cancel).run()
    shown = store.get_message(first.message_id)
    assert (shown.text, shown.version, shown.version_count, shown.status) == ("Two.", 2, 3, "complete")


def test_versions_go_with_their_message(store: ConversationStore) -> None:
    svc = ChatService(Paths.default(), None, None, store)
    first = svc.ask(WordModel("A."), "q?", _settings())
    first.run()
    svc.regenerate(WordModel("B."), first.conversation_id, _settings()).run()
    svc.edit_and_resend(WordModel("C."), first.user_message_id, "other q?", _settings()).run()
    rows = store._query("SELECT count(*) FROM message_versions")
    assert rows[0][0] == 0
    assert [m.version_count for m in store.messages(first.conversation_id)] == [1, 1]
