"""Training data: every input format, encodings, bad rows, the preview and answer-only labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bubble_desktop.core.errors import TrainingDataError
from bubble_desktop.core.train.data import encode_example, load_conversations, load_file, load_files, preview


def test_qa_lines_and_multiline_answers(tmp_path: Path) -> None:
    f = tmp_path / "faq.txt"
    f.write_text(
        "What is Bubble?##A private chatbot.\n\nHow to install?##Run the installer.\nThen open it.\n"
        "##no question\n",
        encoding="utf-8",
    )
    ds = load_file(f)
    assert [(e.prompt, e.answer) for e in ds.examples] == [
        ("What is Bubble?", "A private chatbot."),
        ("How to install?", "Run the installer.\nThen open it."),
    ]
    assert ds.examples[1].source == "faq.txt:3"
    assert [(p.row, p.level) for p in ds.problems] == [(5, "error")]
    assert "empty question" in ds.problems[0].message


def test_qa_gbk_encoded(tmp_path: Path) -> None:
    f = tmp_path / "问答.txt"
    f.write_bytes(
        "北京是哪个国家的首都？##北京是中国的首都。\n今天天气怎么样？##今天天气很好，适合出门散步。\n".encode(
            "gbk"
        )
    )
    ds = load_file(f)
    assert ds.examples[0].answer == "北京是中国的首都。"
    assert ds.examples[1].prompt == "今天天气怎么样？"
    assert not ds.problems


def test_jsonl_shapes(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Translate", "input": "hello", "output": "你好"},
        {"prompt": "2+2?", "response": "4"},
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "Name?"},
                {"role": "assistant", "content": "Bubble."},
            ]
        },
        {"content": "类型#上衣*颜色#红色", "summary": "一件红色上衣。"},
        {"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
    ]
    f = tmp_path / "data.jsonl"
    f.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    ds = load_file(f)
    assert not ds.problems
    ex = ds.examples
    assert (ex[0].prompt, ex[0].answer) == ("Translate\nhello", "你好")
    assert (ex[1].prompt, ex[1].answer) == ("2+2?", "4")
    assert ex[2].system == "Be brief." and ex[2].history == (("Hi", "Hello!"),) and ex[2].answer == "Bubble."
    assert ex[3].answer == "一件红色上衣。"
    assert (ex[4].prompt, ex[4].answer) == ("Q", "A")


def test_jsonl_bad_rows_are_reported_per_row(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(
        '{"prompt": "ok", "response": "fine"}\n{"prompt": "x"\n[1, 2]\n{"foo": 1}\n'
        '{"messages": [{"role": "user", "content": "only a question"}]}\n',
        encoding="utf-8",
    )
    ds = load_file(f)
    assert len(ds.examples) == 1
    rows = {p.row: p.message for p in ds.errors}
    assert set(rows) == {2, 3, 4, 5}
    assert "not valid JSON" in rows[2] and "JSON object" in rows[3]
    assert "unknown row shape" in rows[4] and "foo" in rows[4]
    assert "assistant" in rows[5]
    with pytest.raises(TrainingDataError) as err:
        ds.raise_for_errors()
    assert "bad.jsonl:2" in err.value.message and "4 row(s)" in err.value.message


def test_json_list(tmp_path: Path) -> None:
    f = tmp_path / "data.json"
    f.write_text(json.dumps([{"question": "Q1", "answer": "A1"}]), encoding="utf-8")
    assert [(e.prompt, e.answer) for e in load_file(f).examples] == [("Q1", "A1")]


@pytest.mark.parametrize(
    ("header", "encoding"),
    [("question,answer", "utf-8"), ("问题,答案", "gbk"), ("Prompt,Response", "utf-8-sig")],
)
def test_csv_columns(tmp_path: Path, header: str, encoding: str) -> None:
    f = tmp_path / "qa.csv"
    f.write_bytes(
        f'id,{header}\n1,什么是泡泡？,一个本地聊天机器人。\n2,"Hi, there","Hello, friend"\n3,short\n'.encode(
            encoding
        )
    )
    ds = load_file(f)
    assert [(e.prompt, e.answer) for e in ds.examples] == [
        ("什么是泡泡？", "一个本地聊天机器人。"),
        ("Hi, there", "Hello, friend"),
    ]
    assert [(p.row, "column" in p.message) for p in ds.errors] == [(4, True)]


def test_csv_without_known_columns(tmp_path: Path) -> None:
    f = tmp_path / "x.csv"
    f.write_text("foo,bar\n1,2\n", encoding="utf-8")
    ds = load_file(f)
    assert not ds.examples and "question,answer" in ds.errors[0].message


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_files([tmp_path / "nope.txt"])
    b = tmp_path / "blob.txt"
    b.write_bytes(bytes(range(256)) * 10)
    with pytest.raises(TrainingDataError, match="not a text file"):
        load_file(b)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    ds = load_file(empty)
    with pytest.raises(TrainingDataError, match="no question/answer pairs"):
        ds.raise_for_errors()


def test_saved_conversations(tmp_path: Path) -> None:
    from bubble_desktop.core.chat.store import ConversationStore

    with ConversationStore(tmp_path / "chats.sqlite3") as store:
        cid = store.create_conversation("t")
        store.add_message(cid, "user", "Hi")
        store.add_message(cid, "assistant", "Hello!")
        store.add_message(cid, "user", "Who are you?")
        store.add_message(cid, "assistant", "Bubble.")
        ds = load_conversations(store, [cid])
    assert [(e.prompt, e.answer, e.history) for e in ds.examples] == [
        ("Hi", "Hello!", ()),
        ("Who are you?", "Bubble.", (("Hi", "Hello!"),)),
    ]


def test_labels_cover_the_answer_only_and_preview(tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from bubble_desktop.core.llm.base import ChatMessage
    from bubble_desktop.core.llm.transformers_backend import render_chat

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    f = tmp_path / "qa.txt"
    f.write_text(
        "What is Bubble?##A private chatbot.\nWhat is Bubble?##A private chatbot.\nEmpty?##\n"
        + "Long?##"
        + "word " * 300
        + "\n",
        encoding="utf-8",
    )
    ds = load_file(f)
    enc = encode_example(tok, ds.examples[0])
    prompt = render_chat(tok, [ChatMessage("user", "What is Bubble?")])
    n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert enc.labels[:n_prompt] == [-100] * n_prompt
    answer = tok.decode(enc.input_ids[n_prompt:])
    assert answer.startswith("A private chatbot.<|im_end|>")  # the end-of-turn token is learned too
    pv = preview(ds.examples, tok, max_len=128, problems=ds.problems)
    assert (pv.examples, pv.usable, pv.empty_answers, pv.duplicates, pv.over_long) == (4, 3, 1, 1, 1)
    assert pv.tokens_max > 128 and pv.tokens_min > 0
    messages = " | ".join(str(p) for p in pv.problems)
    assert "qa.txt:2: duplicate of qa.txt:1" in messages and "qa.txt:3: empty answer" in messages
    assert "qa.txt:4" in messages and "longer than" in messages
    cut = encode_example(tok, ds.examples[3], max_len=128)
    assert cut.truncated and len(cut.input_ids) == 128
