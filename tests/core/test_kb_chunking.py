"""Chunking: size and overlap, sentence ends in English and Chinese, positions and headings kept."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bubble_desktop.core.kb.chunking import chunk_segments, chunk_spans, sentence_spans
from bubble_desktop.core.kb.types import Segment

_words = st.text(alphabet="abcdefghij 。！？；.!?\n中文字", min_size=0, max_size=3000)


@settings(max_examples=150, deadline=None)
@given(_words, st.integers(min_value=20, max_value=400), st.integers(min_value=0, max_value=200))
def test_chunks_cover_the_text_within_size(text: str, size: int, overlap: int) -> None:
    spans = chunk_spans(text, size, overlap)
    covered = [False] * len(text)
    prev_start = -1
    for s, e in spans:
        assert 0 <= s < e <= len(text)
        assert e - s <= size
        assert s > prev_start  # always moves forward
        prev_start = s
        for i in range(s, e):
            covered[i] = True
    assert all(covered[i] for i, ch in enumerate(text) if not ch.isspace())


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=500))
def test_sentence_spans_tile_the_text(text: str) -> None:
    spans = sentence_spans(text)
    assert "".join(text[s:e] for s, e in spans) == text


def test_chinese_sentence_ends() -> None:
    text = "第一句话。第二句话！第三句话？第四句话；第五句话。"
    assert [text[s:e] for s, e in sentence_spans(text)] == [
        "第一句话。",
        "第二句话！",
        "第三句话？",
        "第四句话；",
        "第五句话。",
    ]
    spans = chunk_spans(text, 12, 0)
    assert [text[s:e] for s, e in spans] == ["第一句话。第二句话！", "第三句话？第四句话；", "第五句话。"]


def test_english_split_at_sentences_with_overlap() -> None:
    sentences = [f"Sentence number {i} is here." for i in range(20)]
    text = " ".join(sentences)
    spans = chunk_spans(text, 100, 40)
    pieces = [text[s:e].strip() for s, e in spans]
    assert all(p.endswith(".") for p in pieces)  # cut at sentence ends
    assert all(p.split(" ")[0] in ("Sentence",) for p in pieces)  # and start at one
    # neighbours share the last sentence (overlap)
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a.split(". ")[-1].rstrip(".") in b


def test_long_words_never_cut_when_avoidable() -> None:
    text = " ".join(["supercalifragilistic"] * 50)
    for s, e in chunk_spans(text, 100, 20):
        piece = text[s:e].strip()
        assert all(w == "supercalifragilistic" for w in piece.split())


def test_positions_and_headings() -> None:
    segs = [
        Segment("line one.\nline two.\nline three is longer.\nline four.", "line", 10, heading="Intro"),
        Segment("page text. " * 30, "page", 3),
    ]
    chunks = chunk_segments(segs, 30, 0)
    assert chunks[0].position == "line 10" and chunks[0].heading == "Intro"
    assert chunks[1].position == "line 12"
    assert {c.position for c in chunks if c.heading is None} == {"page 3"}


def test_rows_are_packed_whole_and_qa_stays_alone() -> None:
    rows = [Segment(f"name: item {i}\nprice: {i}", "row", i, atomic=True) for i in range(1, 8)]
    chunks = chunk_segments(rows, 60, 10)
    assert [c.position for c in chunks] == ["row 1", "row 3", "row 5", "row 7"]
    assert chunks[0].text == "name: item 1\nprice: 1\n\nname: item 2\nprice: 2"
    qa = [
        Segment("answer one", "line", 1, title="q1", standalone=True),
        Segment("answer two", "line", 2, title="q2", standalone=True),
    ]
    assert [(c.text, c.title) for c in chunk_segments(qa, 500, 50)] == [
        ("answer one", "q1"),
        ("answer two", "q2"),
    ]
