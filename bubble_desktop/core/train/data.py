"""Training examples from the files users already have, and a preview before anything runs.

Formats (detected by extension, then by content):

- ``title##answer`` Q&A text (the seed's format): one pair per line; a line without ``##`` right
  after a pair continues that pair's answer (multi-line answers).
- JSONL / JSON (a list of objects): ``instruction``/``input``/``output`` (Alpaca), ``prompt``/``response``
  (also ``completion``, ``question``/``answer``, ``query``), chat ``messages`` (also ShareGPT
  ``conversations`` with ``from``/``value``), THUDM ptuning ``content``/``summary``; optional
  ``system`` and ``history`` ([[q, a], ...]).
- CSV/TSV with a question and an answer column (English or Chinese header names).
- Saved conversations (:class:`ConversationStore`): every finished assistant turn with the turns before it.

Text is decoded like the knowledge-base parsers do (BOMs, UTF-16, GBK/GB18030 via charset detection).
Rows that cannot be read are reported per row (file, row number, what is wrong) in ``Dataset.problems``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bubble_desktop.core.errors import ParseError, TrainingDataError
from bubble_desktop.core.llm.base import ChatMessage

if TYPE_CHECKING:
    from bubble_desktop.core.chat.store import ConversationStore

QA_SEPARATOR = "##"
MAX_DATA_BYTES = 256 * 1024 * 1024

QUESTION_COLUMNS = (
    "question",
    "questions",
    "q",
    "prompt",
    "instruction",
    "query",
    "input",
    "title",
    "ask",
    "问题",
    "问",
    "提问",
    "问句",
    "标题",
    "题目",
    "指令",
    "输入",
)
ANSWER_COLUMNS = (
    "answer",
    "answers",
    "a",
    "response",
    "output",
    "reply",
    "completion",
    "target",
    "content",
    "答案",
    "回答",
    "答",
    "回复",
    "答复",
    "内容",
    "输出",
)


@dataclass(frozen=True)
class Example:
    """One training pair: the user's ``prompt`` (after ``system`` and ``history`` turns) and the answer."""

    prompt: str
    answer: str
    system: str = ""
    history: tuple[tuple[str, str], ...] = ()
    source: str = ""  # "file.txt:12" or "conversation 3, message 7"

    def prompt_messages(self) -> list[ChatMessage]:
        out: list[ChatMessage] = []
        if self.system:
            out.append(ChatMessage("system", self.system))
        for q, a in self.history:
            out.append(ChatMessage("user", q))
            out.append(ChatMessage("assistant", a))
        out.append(ChatMessage("user", self.prompt))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "answer": self.answer,
            "system": self.system,
            "history": [list(h) for h in self.history],
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Example:
        return cls(
            str(data["prompt"]),
            str(data["answer"]),
            str(data.get("system", "")),
            tuple((str(q), str(a)) for q, a in data.get("history", [])),
            str(data.get("source", "")),
        )


@dataclass(frozen=True)
class RowProblem:
    """A problem in one row: ``level`` "error" (the row was not read) or "warning" (read, but suspect)."""

    file: str
    row: int  # 1-based line or row number; 0 = the whole file
    message: str
    level: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row else self.file
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Dataset:
    examples: list[Example] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[RowProblem]:
        return [p for p in self.problems if p.level == "error"]

    def extend(self, other: Dataset) -> None:
        self.examples.extend(other.examples)
        self.problems.extend(other.problems)
        self.files.extend(other.files)

    def raise_for_errors(self, limit: int = 10) -> None:
        """TrainingDataError naming the first ``limit`` unreadable rows, or when nothing is left."""
        errors = self.errors
        if errors:
            lines = "; ".join(str(p) for p in errors[:limit])
            more = f" (and {len(errors) - limit} more)" if len(errors) > limit else ""
            raise TrainingDataError(
                f"{len(errors)} row(s) of the training data could not be read: {lines}{more}"
            )
        if not any(e.answer.strip() for e in self.examples):
            raise TrainingDataError(
                "The training data holds no usable question/answer pairs.",
                "Use title##answer lines, JSONL (instruction/output, prompt/response, messages), "
                "or a CSV with question and answer columns.",
            )


# ------------------------------------------------------------------------------------------ loading


def read_text(path: Path) -> str:
    """The file's text, whatever its encoding (UTF-8/16 with or without BOM, GBK, Big5 ...)."""
    from bubble_desktop.core.kb.parsers import decode_text

    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TrainingDataError(
            f"The training file {str(path)!r} cannot be read: {exc.strerror or exc}"
        ) from exc
    if size > MAX_DATA_BYTES:
        raise TrainingDataError(f"The training file {path.name} is larger than {MAX_DATA_BYTES >> 20} MB.")
    try:
        text, _ = decode_text(path.read_bytes())
    except ParseError as exc:
        raise TrainingDataError(f"{path.name} is not a text file ({exc.message}).") from exc
    return text.replace("\r\n", "\n").replace("\r", "\n")


def load_files(paths: Iterable[str | Path]) -> Dataset:
    """Examples from every file (folders: their files, sorted); per-row problems collected, not raised."""
    from bubble_desktop.core.kb.parsers import iter_files

    out = Dataset()
    for path in iter_files([Path(p) for p in paths]):
        if not path.exists():
            raise TrainingDataError(f"The training file {str(path)!r} does not exist.")
        out.extend(load_file(path))
    return out


def load_file(path: str | Path) -> Dataset:
    """Examples from one file; the format is chosen by extension, then sniffed from the content."""
    path = Path(path)
    text = read_text(path)
    ext = path.suffix.lower()
    name = path.name
    if ext in (".jsonl", ".ndjson"):
        ds = _load_jsonl(text, name)
    elif ext == ".json":
        ds = _load_json(text, name)
    elif ext in (".csv", ".tsv"):
        ds = _load_csv(text, name, "\t" if ext == ".tsv" else None)
    else:
        stripped = text.lstrip()
        if stripped.startswith("{") and QA_SEPARATOR not in stripped.split("\n", 1)[0]:
            ds = _load_jsonl(text, name)
        elif stripped.startswith("["):
            ds = _load_json(text, name)
        else:
            ds = _load_qa(text, name)
    ds.files.append(str(path))
    if not ds.examples and not ds.errors:
        ds.problems.append(RowProblem(name, 0, "no question/answer pairs found"))
    return ds


def _load_qa(text: str, name: str) -> Dataset:
    ds = Dataset()
    current: list[Any] | None = None  # [title, answer_lines, line_no]

    def flush() -> None:
        if current is not None:
            ds.examples.append(
                Example(current[0], "\n".join(current[1]).strip(), source=f"{name}:{current[2]}")
            )

    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        title, sep, answer = line.partition(QA_SEPARATOR)
        if sep:
            flush()
            if not title.strip():
                current = None
                ds.problems.append(RowProblem(name, i, "empty question before ##"))
                continue
            current = [title.strip(), [answer.strip()], i]
        elif current is not None:
            current[1].append(line.rstrip())  # continuation of a multi-line answer
        else:
            ds.problems.append(
                RowProblem(name, i, "no ## between question and answer (expected title##answer)")
            )
    flush()
    return ds


def _load_jsonl(text: str, name: str) -> Dataset:
    ds = Dataset()
    for i, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            ds.problems.append(RowProblem(name, i, f"not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        _add_object(ds, obj, name, i)
    return ds


def _load_json(text: str, name: str) -> Dataset:
    try:
        data = json.loads(text)
    except ValueError as exc:
        if "\n{" in text or text.lstrip().startswith("{"):
            return _load_jsonl(text, name)  # a .json file that is really JSON lines
        return Dataset(problems=[RowProblem(name, getattr(exc, "lineno", 0), f"not valid JSON ({exc})")])
    if isinstance(data, dict):
        for key in ("data", "examples", "train", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
        else:
            data = [data]
    ds = Dataset()
    if not isinstance(data, list):
        ds.problems.append(RowProblem(name, 0, "expected a list of objects"))
        return ds
    for i, obj in enumerate(data, start=1):
        _add_object(ds, obj, name, i)
    return ds


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _add_object(ds: Dataset, obj: Any, name: str, row: int) -> None:
    if not isinstance(obj, dict):
        ds.problems.append(RowProblem(name, row, f"expected a JSON object, got {type(obj).__name__}"))
        return
    try:
        ex = _example_from_object(obj, f"{name}:{row}")
    except ValueError as exc:
        ds.problems.append(RowProblem(name, row, str(exc)))
        return
    ds.examples.append(ex)


def _history(obj: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    raw = obj.get("history") or []
    out = []
    if not isinstance(raw, list):
        raise ValueError("'history' must be a list of [question, answer] pairs")
    for pair in raw:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise ValueError("'history' must be a list of [question, answer] pairs")
        out.append((pair[0], pair[1]))
    return tuple(out)


def _example_from_object(obj: dict[str, Any], source: str) -> Example:
    system = _text(obj.get("system")) or ""
    messages = obj.get("messages", obj.get("conversations"))
    if messages is not None:
        return _example_from_messages(messages, system, source)
    if "instruction" in obj:
        instruction = _text(obj.get("instruction"))
        extra = _text(obj.get("input")) or ""
        answer = _text(obj.get("output", obj.get("response")))
        if instruction is None or answer is None:
            raise ValueError("an 'instruction' row needs text in 'instruction' and 'output'")
        prompt = f"{instruction}\n{extra}" if extra.strip() else instruction
        return Example(prompt.strip(), answer.strip(), system, _history(obj), source)
    for q_key, a_keys in (
        ("prompt", ("response", "completion", "output", "answer")),
        ("question", ("answer", "response", "output")),
        ("query", ("response", "answer", "output")),
        ("content", ("summary",)),
        ("input", ("output", "target")),
        ("问题", ("答案", "回答")),
    ):
        if q_key in obj:
            a_key = next((k for k in a_keys if k in obj), None)
            q = _text(obj.get(q_key))
            if a_key is None:
                raise ValueError(f"has {q_key!r} but no answer field ({' / '.join(a_keys)})")
            a = _text(obj.get(a_key))
            if q is None or a is None:
                raise ValueError(f"{q_key!r} and {a_key!r} must be text")
            return Example(q.strip(), a.strip(), system, _history(obj), source)
    keys = ", ".join(sorted(obj)[:6]) or "none"
    raise ValueError(
        f"unknown row shape (keys: {keys}); expected instruction/output, prompt/response, "
        "messages or content/summary"
    )


_ROLE_ALIASES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


def _example_from_messages(messages: Any, system: str, source: str) -> Example:
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty list")
    turns: list[tuple[str, str]] = []
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object with role and content")
        role = _ROLE_ALIASES.get(str(m.get("role", m.get("from", ""))).lower())
        content = _text(m.get("content", m.get("value")))
        if role is None or content is None:
            raise ValueError("each message needs a role (system/user/assistant) and text content")
        turns.append((role, content))
    if turns and turns[0][0] == "system":
        system = turns.pop(0)[1]
    if not turns or turns[-1][0] != "assistant":
        raise ValueError("the last message must be the assistant's answer")
    history: list[tuple[str, str]] = []
    pending: str | None = None
    for role, content in turns[:-1]:
        if role == "user":
            if pending is not None:
                raise ValueError("two user messages in a row")
            pending = content
        elif role == "assistant":
            if pending is None:
                raise ValueError("an assistant message without a user message before it")
            history.append((pending, content))
            pending = None
    if pending is None:
        raise ValueError("no user message before the last answer")
    return Example(pending.strip(), turns[-1][1].strip(), system, tuple(history), source)


def _find_column(header: Sequence[str], names: Sequence[str], skip: int = -1) -> int:
    norm = [h.strip().strip("\ufeff").lower() for h in header]
    for name in names:
        for i, h in enumerate(norm):
            if i != skip and h == name:
                return i
    return -1


def _load_csv(text: str, name: str, delimiter: str | None) -> Dataset:
    ds = Dataset()
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        ds.problems.append(RowProblem(name, 0, f"not a readable CSV file ({exc})"))
        return ds
    if not rows:
        return ds
    header = rows[0]
    q = _find_column(header, QUESTION_COLUMNS)
    a = _find_column(header, ANSWER_COLUMNS, skip=q)
    if q < 0 or a < 0:
        ds.problems.append(
            RowProblem(
                name,
                1,
                f"no question/answer columns in the header ({', '.join(header[:6])}); "
                "name them question,answer (or 问题,答案)",
            )
        )
        return ds
    sys_col = _find_column(header, ("system", "系统"))
    for i, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(q, a):
            ds.problems.append(RowProblem(name, i, f"only {len(row)} column(s); expected {len(header)}"))
            continue
        system = row[sys_col].strip() if 0 <= sys_col < len(row) else ""
        if not row[q].strip():
            ds.problems.append(RowProblem(name, i, "empty question"))
            continue
        ds.examples.append(Example(row[q].strip(), row[a].strip(), system, source=f"{name}:{i}"))
    return ds


def load_conversations(store: ConversationStore, conversation_ids: Iterable[int]) -> Dataset:
    """Every finished assistant answer in the chosen saved conversations, with the turns before it."""
    ds = Dataset()
    for cid in conversation_ids:
        conv = store.get_conversation(cid)
        system = ""
        history: list[tuple[str, str]] = []
        pending: str | None = None
        for msg in store.messages(cid):
            if msg.role == "system":
                system = msg.text
            elif msg.role == "user":
                pending = msg.text
            elif msg.role == "assistant" and pending is not None:
                if msg.status == "complete" and msg.text.strip():
                    ds.examples.append(
                        Example(
                            pending.strip(),
                            msg.text.strip(),
                            system,
                            tuple(history),
                            f"conversation {cid}, message {msg.id}",
                        )
                    )
                history.append((pending, msg.text))
                pending = None
        ds.files.append(f"conversation {cid}: {conv.title}")
    return ds


# ------------------------------------------------------------------------------------ tokenization


@dataclass(frozen=True)
class Encoded:
    input_ids: list[int]
    labels: list[int]  # -100 on the prompt: loss on the answer tokens only
    truncated: bool = False

    @property
    def answer_tokens(self) -> int:
        return sum(1 for x in self.labels if x != -100)


def encode_example(
    tokenizer: Any,
    example: Example,
    max_len: int = 0,
    prompt_ids_of: Callable[[list[ChatMessage]], list[int]] | None = None,
) -> Encoded:
    """Token ids as at inference: the prompt rendered by the backend's chat template (generation
    prompt added), then the answer as the template closes an assistant turn (its end-of-turn token
    included, so the model learns to stop). Over ``max_len``: the prompt is cut from the left first.

    ``prompt_ids_of``: the prompt ids of a model that builds its prompts itself (ChatGLM's own code);
    the answer follows them with the end-of-sequence token, as THUDM's fine-tuning scripts encode it."""
    from bubble_desktop.core.llm.transformers_backend import render_chat

    prompt_msgs = example.prompt_messages()
    has_template = bool(getattr(tokenizer, "chat_template", None)) and prompt_ids_of is None
    prompt_text = (
        "" if prompt_ids_of is not None else render_chat(tokenizer, prompt_msgs, add_generation_prompt=True)
    )
    answer_text = ""
    if has_template:
        full = render_chat(
            tokenizer, [*prompt_msgs, ChatMessage("assistant", example.answer)], add_generation_prompt=False
        )
        if full.startswith(prompt_text) and example.answer in full[len(prompt_text) :]:
            answer_text = full[len(prompt_text) :]
    add_special = not has_template
    if prompt_ids_of is not None:
        prompt_ids = list(prompt_ids_of(list(prompt_msgs)))
    else:
        prompt_ids = list(tokenizer(prompt_text, add_special_tokens=add_special)["input_ids"])
    if answer_text:
        answer_ids = list(tokenizer(answer_text, add_special_tokens=False)["input_ids"])
    else:
        answer_ids = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"])
        eos = getattr(tokenizer, "eos_token_id", None)
        if isinstance(eos, int):
            answer_ids.append(eos)
    truncated = False
    if max_len and len(prompt_ids) + len(answer_ids) > max_len:
        truncated = True
        keep_prompt = max(max_len - len(answer_ids), min(len(prompt_ids), max_len // 2))
        prompt_ids = prompt_ids[-keep_prompt:] if keep_prompt > 0 else []
        answer_ids = answer_ids[: max_len - len(prompt_ids)]
    return Encoded(prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids, truncated)


# ----------------------------------------------------------------------------------------- preview


@dataclass
class DataPreview:
    examples: int
    usable: int
    empty_answers: int
    duplicates: int
    over_long: int
    max_len: int
    tokens_min: int
    tokens_mean: float
    tokens_p95: int
    tokens_max: int
    answer_tokens_total: int
    tokens_total: int
    problems: list[RowProblem]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["problems"] = [p.to_dict() for p in self.problems]
        return d


def preview(
    examples: Sequence[Example], tokenizer: Any, max_len: int, problems: Sequence[RowProblem] = ()
) -> DataPreview:
    """Counts, token lengths (chat template applied as at training) and problems found: empty answers,
    duplicates, rows longer than ``max_len`` tokens (they would be cut). ``problems`` (from loading) are
    passed through first."""
    found: list[RowProblem] = list(problems)
    seen: dict[tuple[str, str, str], str] = {}
    lengths: list[int] = []
    empty = dup = over = answer_total = 0
    for ex in examples:
        file, _, row = ex.source.rpartition(":")
        row_no = int(row) if row.isdigit() else 0
        file = file if row_no else ex.source
        if not ex.answer.strip():
            empty += 1
            found.append(RowProblem(file, row_no, "empty answer (skipped in training)", "warning"))
            continue
        key = (ex.system, ex.prompt, ex.answer)
        if key in seen:
            dup += 1
            found.append(RowProblem(file, row_no, f"duplicate of {seen[key]}", "warning"))
        else:
            seen[key] = ex.source
        enc = encode_example(tokenizer, ex)
        n = len(enc.input_ids)
        lengths.append(n)
        answer_total += enc.answer_tokens
        if max_len and n > max_len:
            over += 1
            found.append(
                RowProblem(
                    file,
                    row_no,
                    f"{n} tokens, longer than the maximum length {max_len} (the prompt is cut from the left)",
                    "warning",
                )
            )
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))] if ordered else 0
    return DataPreview(
        examples=len(examples),
        usable=len(lengths),
        empty_answers=empty,
        duplicates=dup,
        over_long=over,
        max_len=max_len,
        tokens_min=ordered[0] if ordered else 0,
        tokens_mean=round(statistics.fmean(ordered), 1) if ordered else 0.0,
        tokens_p95=p95,
        tokens_max=ordered[-1] if ordered else 0,
        answer_tokens_total=answer_total,
        tokens_total=sum(ordered),
        problems=found,
    )
