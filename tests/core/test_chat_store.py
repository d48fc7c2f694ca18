"""Conversation store: CRUD, full-text search, edit/truncate, export/import, and a real SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bubble_desktop.core.chat.sources import Source
from bubble_desktop.core.chat.store import INTERRUPTED, ConversationStore, title_from
from bubble_desktop.core.errors import ConversationError
from bubble_desktop.core.paths import Paths


@pytest.fixture
def store(tmp_path: Path):
    with ConversationStore(tmp_path / "chats.sqlite3") as s:
        yield s


KB_SOURCE = Source(
    1,
    "kb",
    "notes.md",
    "Zorblat festivals happen in May.",
    path="/d/notes.md",
    position="line 3",
    score=0.82,
    kb="notes",
)
WEB_SOURCE = Source(
    2, "web", "Festival news", "Crowds at Zorblat.", url="https://news.test/a", date="2026-11-20", site="News"
)


def _conversation(store: ConversationStore) -> int:
    cid = store.create_conversation(kb_names=["notes"], web=True)
    store.add_message(cid, "user", "When is the Zorblat festival held each year?")
    store.add_message(
        cid,
        "assistant",
        "It is held in May [1], with big crowds [2].",
        sources=[KB_SOURCE, WEB_SOURCE],
        sampling={"temperature": 0.0},
        stats={"completion_tokens": 11, "tokens_per_s": 20.0},
        web_used=True,
    )
    return cid


def test_wal_and_default_location() -> None:
    paths = Paths.default().ensure()
    with ConversationStore(paths.chats_db) as s:
        mode = s._query("PRAGMA journal_mode")[0][0]
    assert mode == "wal" and paths.chats_db.exists()


def test_conversation_roundtrip(store: ConversationStore) -> None:
    cid = _conversation(store)
    conv = store.get_conversation(cid)
    assert conv.title == "When is the Zorblat festival held each year?"
    assert conv.kb_names == ("notes",) and conv.web and conv.message_count == 2
    user, answer = store.messages(cid)
    assert (user.role, user.seq, answer.seq) == ("user", 0, 1)
    assert answer.sources == (KB_SOURCE, WEB_SOURCE)
    assert answer.sampling == {"temperature": 0.0} and answer.stats["completion_tokens"] == 11
    assert answer.web_used and answer.status == "complete"


def test_title_from_first_question_is_one_short_line() -> None:
    assert title_from("  a\nb  ") == "a b"
    assert len(title_from("x " * 100)) == 60


def test_list_rename_delete(store: ConversationStore) -> None:
    first = _conversation(store)
    second = store.create_conversation("Second one")
    assert [c.id for c in store.list_conversations()] == [second, first]
    store.rename(first, "Festival dates")
    assert store.get_conversation(first).title == "Festival dates"
    store.delete_conversation(first)
    assert [c.id for c in store.list_conversations()] == [second]
    assert store.search("Zorblat") == []
    with pytest.raises(ConversationError):
        store.get_conversation(first)


def test_full_text_search_english_and_chinese(store: ConversationStore) -> None:
    cid = _conversation(store)
    other = store.create_conversation()
    store.add_message(other, "user", "北京是中国的首都吗？")
    hits = store.search("zorblat festival")
    assert {h.conversation_id for h in hits} == {cid}
    assert "[Zorblat festival]" in hits[0].snippet
    assert [h.conversation_id for h in store.search("中国的首都")] == [other]
    assert [h.conversation_id for h in store.search("北京")] == [other]  # two characters: substring scan
    assert store.search('say "hi" OR') == []


def test_edit_drops_what_followed(store: ConversationStore) -> None:
    cid = _conversation(store)
    q2 = store.add_message(cid, "user", "And in 2027?")
    store.add_message(cid, "assistant", "Also May.")
    first_q = store.messages(cid)[0]
    edited = store.edit_message(first_q.id, "Where is the Zorblat festival held?")
    assert [m.text for m in store.messages(cid)] == ["Where is the Zorblat festival held?"]
    assert edited.text.startswith("Where") and store.get_conversation(cid).title.startswith("Where")
    with pytest.raises(ConversationError):
        store.get_message(q2)
    assert store.search("Also May") == []  # the FTS index follows deletes and updates
    assert store.search("Where is the Zorblat")[0].message_id == first_q.id


def test_only_user_messages_can_be_edited(store: ConversationStore) -> None:
    cid = _conversation(store)
    with pytest.raises(ConversationError):
        store.edit_message(store.messages(cid)[1].id, "changed")


def test_export_markdown_has_sources_as_footnotes(store: ConversationStore) -> None:
    md = store.export_markdown(_conversation(store))
    assert md.startswith("# When is the Zorblat festival held each year?")
    assert "It is held in May [^2-1], with big crowds [^2-2]." in md
    assert "[^2-1]: notes.md — /d/notes.md (line 3)" in md
    assert "[^2-2]: Festival news — https://news.test/a, 2026-11-20" in md
    assert "*(used web search)*" in md


def test_export_import_json_roundtrip(store: ConversationStore, tmp_path: Path) -> None:
    cid = _conversation(store)
    data = json.loads(json.dumps(store.export_json(cid)))
    new = store.import_json(data)
    assert new != cid
    old_msgs, new_msgs = store.messages(cid), store.messages(new)
    assert [(m.role, m.text, m.sources, m.status) for m in old_msgs] == [
        (m.role, m.text, m.sources, m.status) for m in new_msgs
    ]
    assert store.get_conversation(new).title == store.get_conversation(cid).title
    with pytest.raises(ConversationError):
        store.import_json({"format": "something else"})


def test_threads_share_the_store(store: ConversationStore) -> None:
    cid = store.create_conversation("threads")
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(25):
                store.add_message(cid, "user", f"thread {n} message {i}")
                store.list_conversations()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert [m.seq for m in store.messages(cid)] == list(range(100))


_WRITER = textwrap.dedent(
    """
    import sys
    from bubble_desktop.core.chat.store import ConversationStore
    store = ConversationStore(sys.argv[1])
    cid = store.create_conversation("kept")
    store.add_message(cid, "user", "a question that must survive")
    answer = store.add_message(cid, "assistant", "", status="streaming")
    store.save_partial(answer, "half an answer")  # what ChatService writes while streaming
    print(cid, answer, flush=True)
    i = 0
    while True:  # keep writing until killed
        other = store.create_conversation(f"busy {i}")
        store.add_message(other, "user", "x" * 2000)
        i += 1
        if i == 20:
            print("busy", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_answer_leaves_database_intact(tmp_path: Path) -> None:
    db = tmp_path / "chats.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        cid, answer_id = map(int, proc.stdout.readline().split())
        assert proc.stdout.readline().strip() == "busy"  # it is in the middle of writing
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with ConversationStore(db) as store:
        assert store.integrity_ok()
        question, answer = store.messages(cid)
        assert question.text == "a question that must survive"
        assert answer.id == answer_id and answer.status == "error" and answer.text == "half an answer"
        assert answer.stats and answer.stats["error"] == INTERRUPTED
        assert len(store.list_conversations()) >= 21
        store.add_message(cid, "user", "still writable")


def test_export_markdown_leaves_code_alone_and_closes_an_open_fence(store: ConversationStore) -> None:
    """Citations change in prose only; `sys.argv[1]` (block or inline) stays; a cut-off block is closed."""
    cid = store.create_conversation()
    store.add_message(cid, "user", "How do I read the first argument?")
    answer = (
        "Use `sys.argv[1]` as the docs say [1].\n\n"
        "```python\nimport sys\nprint(sys.argv[1])\n```\n\n"
        "Or, cut off mid-block [1]:\n\n"
        "~~~\nname = sys.argv[1]\n"
    )
    store.add_message(cid, "assistant", answer, sources=[KB_SOURCE], status="stopped")
    md = store.export_markdown(cid)
    assert "Use `sys.argv[1]` as the docs say [^2-1]." in md
    assert "print(sys.argv[1])\n```" in md
    assert "Or, cut off mid-block [^2-1]:" in md
    assert "name = sys.argv[1]\n~~~\n" in md
    assert "[^" not in md.split("~~~")[1]
    # The footnotes come after the closed fence, so they render as footnotes, not code.
    fence_closed = md.index("name = sys.argv[1]\n~~~\n")
    assert md.index("[^2-1]: notes.md") > fence_closed
    assert md.count("~~~") == 2


def test_footnote_rewrite_never_touches_code() -> None:
    from bubble_desktop.core.chat.markdown_export import footnote_citations

    assert footnote_citations("a [1] ``x[1]`` b [2]", 3, {1, 2}) == "a [^3-1] ``x[1]`` b [^3-2]"
    # An unmatched backtick is literal text, not code: what follows is still prose.
    assert footnote_citations("a ` b [1]", 1, {1}) == "a ` b [^1-1]"
    # A fence closes only with the same character and at least the same length.
    text = "````\n```\nx[1]\n````\nafter [1]\n"
    assert footnote_citations(text, 1, {1}) == "````\n```\nx[1]\n````\nafter [^1-1]\n"
    assert footnote_citations("```py\nx = a[1]", 1, {1}) == "```py\nx = a[1]\n```\n"
    # Numbers that name no source stay as they are.
    assert footnote_citations("see [7]", 1, {1}) == "see [7]"
