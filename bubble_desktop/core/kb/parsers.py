"""Turn one file into text segments, or say in plain words why it can't be done.

Every failure is a :class:`ParseError` whose message is the reason shown next to the path; the
ingestion carries on with the next file. Encodings are detected (BOM, strict UTF-8, then
charset-normalizer), never assumed: Chinese Windows files are often GBK/GB18030 or Big5.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import os
import re
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bubble_desktop.core.errors import ParseError
from bubble_desktop.core.kb.types import ParsedDocument, Segment

TEXT_TYPES = {
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".rst": "text",
    ".ini": "text",
    ".cfg": "text",
    ".conf": "text",
    ".yaml": "text",
    ".yml": "text",
    ".toml": "text",
    ".xml": "text",
    ".tex": "text",
    ".py": "text",
    ".c": "text",
    ".h": "text",
    ".cpp": "text",
    ".java": "text",
    ".js": "text",
    ".ts": "text",
    ".go": "text",
    ".rs": "text",
    ".sh": "text",
    ".bat": "text",
    ".sql": "text",
    ".srt": "text",
    ".md": "markdown",
    ".markdown": "markdown",
}
DOCUMENT_TYPES = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".qa": "qa",
}
# Types we know are not documents: reported as unsupported without reading them.
KNOWN_BINARY = {
    ".exe",
    ".dll",
    ".so",
    ".dylib",
    ".bin",
    ".zip",
    ".gz",
    ".tgz",
    ".bz2",
    ".xz",
    ".7z",
    ".rar",
    ".tar",
    ".png",
    ".jpg",
    ".jpeg",
    ".gif",
    ".bmp",
    ".webp",
    ".ico",
    ".tif",
    ".tiff",
    ".mp3",
    ".wav",
    ".flac",
    ".ogg",
    ".mp4",
    ".mkv",
    ".avi",
    ".mov",
    ".iso",
    ".dmg",
    ".msi",
    ".pyc",
    ".o",
    ".a",
    ".class",
    ".jar",
    ".safetensors",
    ".gguf",
    ".pt",
    ".pth",
    ".onnx",
    ".sqlite",
    ".sqlite3",
    ".db",
    ".doc",
    ".xls",
    ".xlsx",
    ".ppt",
    ".pptx",
}
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_LINE_CHARS = 1_000_000
MAX_DOCX_UNPACKED = 256 * 1024 * 1024
MAX_ZIP_RATIO = 200
QA_SEPARATOR = "##"

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def detect_type(path: Path) -> str:
    """The parser to use for ``path`` by its extension; "" when the content must be sniffed."""
    ext = path.suffix.lower()
    if ext in DOCUMENT_TYPES:
        return DOCUMENT_TYPES[ext]
    if ext in TEXT_TYPES:
        return TEXT_TYPES[ext]
    if ext in KNOWN_BINARY:
        return "binary"
    return ""


def iter_files(paths: Sequence[Path | str]) -> Iterator[Path]:
    """Files under ``paths`` (folders recursively, sorted), skipping hidden files and folders.

    A path the user named explicitly is kept even when it is hidden; missing paths are yielded so
    the caller reports them.
    """
    for raw in paths:
        p = Path(raw).expanduser()
        p = Path(os.path.abspath(p))
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not _hidden(d))
                for f in sorted(files):
                    if not _hidden(f):
                        yield Path(root) / f
        else:
            yield p


def _hidden(name: str) -> bool:
    return name.startswith(".") or name in {"__pycache__", "node_modules"} or name.startswith("~$")


# ----------------------------------------------------------------------------------------- encodings

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# charset-normalizer names -> the superset codec that decodes everything the subset does
_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "cp936": "gb18030",
    "big5": "big5hkscs",
    "cp950": "big5hkscs",
}


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode bytes to text; returns (text, encoding). Raises ParseError for binary content."""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as exc:
                raise ParseError(f"broken {enc} text: {exc.reason}") from None
    utf16 = _guess_bomless_utf16(data)
    if utf16:
        try:
            return data.decode(utf16), utf16
        except UnicodeDecodeError:
            pass
    if b"\x00" in data[:65536]:
        raise ParseError("binary file (not a supported document type)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[: 4 * 1024 * 1024]).best()
    if best is None or best.encoding is None:
        raise ParseError("binary file or unknown text encoding")
    enc = _SUPERSETS.get(best.encoding.lower(), best.encoding)
    try:
        text = data.decode(enc)
    except (UnicodeDecodeError, LookupError):
        text = data.decode(enc, errors="replace")
    if _control_ratio(text) > 0.05:
        raise ParseError("binary file (not a supported document type)")
    return text, enc


def _guess_bomless_utf16(data: bytes) -> str | None:
    """UTF-16 without a BOM shows as NUL in every other byte of mostly-ASCII text."""
    sample = data[:4096]
    if len(sample) < 4:
        return None
    even = sample[0::2].count(0) / (len(sample) / 2)
    odd = sample[1::2].count(0) / (len(sample) / 2)
    if odd > 0.4 and even < 0.05:
        return "utf-16-le"
    if even > 0.4 and odd < 0.05:
        return "utf-16-be"
    return None


def _control_ratio(text: str) -> float:
    sample = text[:20000]
    if not sample:
        return 0.0
    bad = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\t\n\r\f\v") or ch == "\ufffd")
    return bad / len(sample)


# ------------------------------------------------------------------------------------------- parsing


def read_bytes(path: Path) -> bytes:
    """Read a file, turning OS errors and odd sizes into reasons."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ParseError("file not found") from None
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from None
    if not path.is_file():
        raise ParseError("not a regular file")
    if st.st_size == 0:
        raise ParseError("empty file (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ParseError(
            f"file too large ({st.st_size // 2**20} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)"
        )
    try:
        return path.read_bytes()
    except PermissionError:
        raise ParseError("cannot read file: permission denied") from None
    except OSError as exc:
        raise ParseError(f"cannot read file: {exc.strerror or exc}") from None


def parse_file(path: Path) -> ParsedDocument:
    """Parse one file into segments; raises ParseError with the reason when it can't."""
    kind = detect_type(path)
    if kind == "binary":
        raise ParseError(f"unsupported file type ({path.suffix.lower()})")
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if not kind:
        kind = "text"  # unknown extension: accepted only if the content decodes as text
    parser = _PARSERS[kind]
    segments = tuple(s for s in parser(data) if s.text.strip())
    if not segments:
        if kind == "pdf":
            raise ParseError("no extractable text; OCR is not supported")
        raise ParseError("no text found in the file")
    return ParsedDocument(str(path), kind, len(data), digest, segments)


def _text_lines(data: bytes) -> str:
    text, _ = decode_text(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    longest = max((len(line) for line in text.split("\n")), default=0)
    if longest > MAX_LINE_CHARS:
        raise ParseError(
            f"a single line of {longest / 1_000_000:.1f} million characters; this does not look like a "
            "readable document (minified or generated data?)"
        )
    return text


def _parse_text(data: bytes) -> list[Segment]:
    return [Segment(_text_lines(data), "line", 1)]


def _parse_markdown(data: bytes) -> list[Segment]:
    """One segment per heading section, so every chunk knows the heading it sits under."""
    text = _text_lines(data)
    out: list[Segment] = []
    heading: str | None = None
    buf: list[str] = []
    start = 1
    in_fence = False
    for i, line in enumerate(text.split("\n"), start=1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _HEADING_RE.match(line)
        if m:
            if buf:
                out.append(Segment("\n".join(buf), "line", start, heading))
            heading = m.group(2).strip()
            buf, start = [line], i
        else:
            buf.append(line)
    if buf:
        out.append(Segment("\n".join(buf), "line", start, heading))
    return out


def _parse_qa(data: bytes) -> list[Segment]:
    """``title##answer`` per line: the answer is embedded, the title kept for display."""
    out = []
    for i, line in enumerate(_text_lines(data).split("\n"), start=1):
        if not line.strip():
            continue
        title, sep, answer = line.partition(QA_SEPARATOR)
        if not sep:
            answer, title = line, ""
        answer = answer.strip() or title.strip()
        out.append(Segment(answer, "line", i, None, title.strip() or None, standalone=True))
    return out


def _looks_like_qa(text: str) -> bool:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return bool(lines) and all(QA_SEPARATOR in ln for ln in lines)


def _parse_plain_or_qa(data: bytes) -> list[Segment]:
    text = _text_lines(data)
    if _looks_like_qa(text):
        return _parse_qa(data)
    return [Segment(text, "line", 1)]


def _parse_csv(data: bytes, delimiter: str | None = None) -> list[Segment]:
    """Row-aware: each row becomes "column: value" lines, packed whole into chunks."""
    text = _text_lines(data)
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=delimiter))
    except csv.Error as exc:
        raise ParseError(f"broken CSV: {exc}") from None
    if not rows:
        return []
    header = [h.strip() for h in rows[0]]
    out = []
    for n, row in enumerate(rows[1:], start=1):
        if not any(cell.strip() for cell in row):
            continue
        parts = [
            f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {cell.strip()}"
            for i, cell in enumerate(row)
            if cell.strip()
        ]
        out.append(Segment("\n".join(parts), "row", n, atomic=True))
    if not out and header:  # a one-line file: keep it as text
        out.append(Segment(" ".join(header), "row", 0, atomic=True))
    return out


def _parse_tsv(data: bytes) -> list[Segment]:
    return _parse_csv(data, "\t")


def _flatten_json(value: object, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _flatten_json(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flatten_json(v, f"{prefix}[{i}]")
    elif value is not None:
        yield f"{prefix}: {value}" if prefix else str(value)


def _parse_json(data: bytes) -> list[Segment]:
    text, _ = decode_text(data)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"broken JSON at line {exc.lineno}: {exc.msg}") from None
    if isinstance(value, list):
        return [
            Segment("\n".join(_flatten_json(item)), "item", i, atomic=True) for i, item in enumerate(value, 1)
        ]
    return [Segment("\n".join(_flatten_json(value)), "line", 1)]


def _parse_jsonl(data: bytes) -> list[Segment]:
    out = []
    bad = 0
    for i, line in enumerate(_text_lines(data).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        out.append(Segment("\n".join(_flatten_json(value)), "line", i, atomic=True))
    if bad and not out:
        raise ParseError("broken JSON Lines: no line is valid JSON")
    return out


def _parse_html(data: bytes) -> list[Segment]:
    from bs4 import BeautifulSoup

    text, _ = decode_text(data)
    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "svg"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    if soup.title:
        soup.title.decompose()
    out: list[Segment] = []
    heading = title
    buf: list[str] = []
    index = 1
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "td", "th", "blockquote", "dt", "dd"]):
        if el.find(["p", "li", "td", "pre"]):  # containers: their children are visited themselves
            continue
        txt = el.get_text(" ", strip=True)
        if not txt:
            continue
        if el.name in {"h1", "h2", "h3", "h4"}:
            if buf:
                out.append(Segment("\n".join(buf), "section", index, heading, title))
                index += 1
            heading, buf = txt, [txt]
        else:
            buf.append(txt)
    if buf:
        out.append(Segment("\n".join(buf), "section", index, heading, title))
    if not out:  # markup without the usual block tags
        plain = body.get_text("\n", strip=True)
        if plain:
            out.append(Segment(plain, "section", 1, title, title))
    return out


def _parse_pdf(data: bytes) -> list[Segment]:
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed files are reported by us, once
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                ok = bool(reader.decrypt(""))
            except Exception:  # noqa: BLE001 - unsupported crypto is still "encrypted" to the user
                ok = False
            if not ok:
                raise ParseError("encrypted PDF (password protected); remove the password and add it again")
        pages = reader.pages
        out = []
        for n, page in enumerate(pages, start=1):
            try:
                txt = page.extract_text() or ""
            except Exception:  # noqa: BLE001 - one bad page must not lose the others
                txt = ""
            if txt.strip():
                out.append(Segment(txt, "page", n))
    except ParseError:
        raise
    except (
        PdfReadError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        OSError,
        RecursionError,
    ) as exc:
        raise ParseError(f"corrupt or unreadable PDF ({type(exc).__name__})") from None
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types on hostile input
        raise ParseError(f"corrupt or unreadable PDF ({type(exc).__name__})") from None
    if not out:
        raise ParseError("no extractable text; OCR is not supported (scanned PDF?)")
    return out


def _check_zip(data: bytes) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            packed = sum(i.compress_size for i in infos) or 1
            if "word/document.xml" not in {i.filename for i in infos}:
                raise ParseError("not a valid .docx file (no word/document.xml inside)")
    except zipfile.BadZipFile:
        raise ParseError("broken .docx file (not a valid zip archive)") from None
    if total > MAX_DOCX_UNPACKED or (total > 20 * 1024 * 1024 and total / packed > MAX_ZIP_RATIO):
        raise ParseError(f"refused: the .docx would unpack to {total // (1024 * 1024)} MB (a zip bomb?)")


def _parse_docx(data: bytes) -> list[Segment]:
    _check_zip(data)
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
        out: list[Segment] = []
        heading: str | None = None
        buf: list[str] = []
        start = 1
        n = 0
        body = document.element.body
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        for child in body.iterchildren():
            tag = child.tag.rsplit("}", 1)[-1]
            if tag == "p":
                n += 1
                para = Paragraph(child, document)
                txt = para.text.strip()
                if not txt:
                    continue
                style = (para.style.name if para.style is not None else "") or ""
                if style.lower().startswith(("heading", "title")):
                    if buf:
                        out.append(Segment("\n".join(buf), "paragraph", start, heading))
                    heading, buf, start = txt, [txt], n
                else:
                    if not buf:
                        start = n
                    buf.append(txt)
            elif tag == "tbl":
                n += 1
                table = Table(child, document)
                rows = []
                for row in table.rows:
                    cells: list[str] = []
                    for cell in row.cells:
                        t = cell.text.strip()
                        if t and (not cells or cells[-1] != t):  # merged cells repeat their text
                            cells.append(t)
                    if cells:
                        rows.append(" | ".join(cells))
                if rows:
                    if not buf:
                        start = n
                    buf.append("\n".join(rows))
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-docx/lxml raise many types on broken files
        raise ParseError(f"broken .docx file ({type(exc).__name__})") from None
    if buf:
        out.append(Segment("\n".join(buf), "paragraph", start, heading))
    return out


_PARSERS = {
    "text": _parse_plain_or_qa,
    "markdown": _parse_markdown,
    "qa": _parse_qa,
    "csv": _parse_csv,
    "tsv": _parse_tsv,
    "json": _parse_json,
    "jsonl": _parse_jsonl,
    "html": _parse_html,
    "pdf": _parse_pdf,
    "docx": _parse_docx,
}
