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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".epub": "epub",
    ".odt": "odt",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".webp": "image",
    ".tif": "image",
    ".tiff": "image",
    ".bmp": "image",
}
# Binary Office formats of before 2007: named, with what to do instead.
LEGACY_OFFICE = {
    ".doc": ("Word 97-2003 (.doc)", ".docx"),
    ".ppt": ("PowerPoint 97-2003 (.ppt)", ".pptx"),
    ".xls": ("Excel 97-2003 (.xls)", ".xlsx"),
    ".wps": ("WPS Writer (.wps)", ".docx"),
    ".et": ("WPS Spreadsheets (.et)", ".xlsx"),
    ".dps": ("WPS Presentation (.dps)", ".pptx"),
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
    ".gif",
    ".ico",
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


@dataclass(frozen=True)
class ParseOptions:
    """How a file is read: OCR mode and limit, and the callbacks of a long file (per page)."""

    ocr: str = "auto"  # auto: pages without a usable text layer; always; never
    ocr_max_pages: int = 500
    on_page: Callable[[int, int], None] | None = None  # (pages done, pages total)
    should_stop: Callable[[], bool] | None = None  # checked between pages


class ParseCancelled(Exception):
    """``should_stop`` said stop in the middle of a file."""


def detect_legacy(path: Path) -> ParseError | None:
    """The error for a pre-2007 binary Office file, with the format to save it as; None otherwise."""
    legacy = LEGACY_OFFICE.get(path.suffix.lower())
    if legacy is None:
        return None
    name, modern = legacy
    return ParseError(
        f"{name} files cannot be read; open it in Word/WPS/LibreOffice, save it as {modern} "
        "and add that file",
        f"Save the file as {modern} and add it again.",
    )


def parse_file(path: Path, options: ParseOptions | None = None) -> ParsedDocument:
    """Parse one file into segments; raises ParseError with the reason when it can't.

    Problems that do not fail the file (a page OCR found nothing on) are in ``warnings``.
    """
    opts = options or ParseOptions()
    legacy = detect_legacy(path)
    if legacy is not None:
        raise legacy
    kind = detect_type(path)
    if kind == "binary":
        raise ParseError(f"unsupported file type ({path.suffix.lower()})")
    data = read_bytes(path)
    digest = hashlib.sha256(data).hexdigest()
    if not kind:
        kind = "text"  # unknown extension: accepted only if the content decodes as text
    warnings: list[str] = []
    if kind in _PAGED_PARSERS:
        raw = _PAGED_PARSERS[kind](data, opts, warnings)
    else:
        raw = _PARSERS[kind](data)
    segments = tuple(s for s in raw if s.text.strip())
    if not segments:
        if kind in ("pdf", "image"):
            detail = "; ".join(warnings[:3])
            raise ParseError("no text found, not even by OCR" + (f" ({detail})" if detail else ""))
        raise ParseError("no text found in the file")
    return ParsedDocument(str(path), kind, len(data), digest, segments, tuple(warnings))


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


# PDF text comes from this extractor ("pypdf" or "pdfium"). tests/bench/documents.py on 8 real PDFs
# (2 Chinese): PDFium matched pdftotext as well or better on all 8 and ran 12-20x faster (see the note).
PDF_TEXT_ENGINE = "pdfium"
# A text layer with fewer visible characters than this, or this share of junk, is OCR'd in auto mode.
MIN_LAYER_CHARS = 16
MAX_JUNK_SHARE = 0.25


def _junk_share(text: str) -> float:
    """Share of characters that no real text has: controls, private use, U+FFFD, (cid:N) leftovers."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return 1.0
    bad = sum(
        1
        for ch in visible
        if ord(ch) < 32 or 0xE000 <= ord(ch) <= 0xF8FF or ch == "\ufffd" or 0xF0000 <= ord(ch)
    )
    bad += 5 * text.count("(cid:")
    return min(1.0, bad / len(visible))


def text_layer_usable(text: str) -> bool:
    """Whether a page's text layer is worth keeping, or the page should be OCR'd instead."""
    visible = sum(1 for ch in text if not ch.isspace())
    return visible >= MIN_LAYER_CHARS and _junk_share(text) <= MAX_JUNK_SHARE


def pdf_texts_pypdf(data: bytes) -> list[str]:
    """Text of every page by pypdf ("" for a page it fails on)."""
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed files are reported by us, once
    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception:  # noqa: BLE001 - PDFium has said it opens, so this is pypdf's own limit
            return []
    out = []
    for page in reader.pages:
        try:
            out.append(page.extract_text() or "")
        except Exception:  # noqa: BLE001 - one bad page must not lose the others
            out.append("")
    return out


def pdf_page_text_pdfium(page: Any) -> str:
    textpage = page.get_textpage()
    try:
        return str(textpage.get_text_bounded()).replace("\r\n", "\n").replace("\r", "\n")
    finally:
        textpage.close()


def open_pdf(data: bytes | str) -> Any:
    """A pypdfium2 document, or ParseError in words (encrypted, corrupt)."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        msg = str(exc).lower()
        if "password" in msg:
            raise ParseError(
                "encrypted PDF (password protected); remove the password and add it again"
            ) from None
        raise ParseError("corrupt or unreadable PDF (PDFium cannot open it)") from None
    except Exception as exc:  # noqa: BLE001 - hostile input
        raise ParseError(f"corrupt or unreadable PDF ({type(exc).__name__})") from None


def render_page(page: Any, scale: float | None = None) -> Any:
    """A PDF page as a PIL image (white background)."""
    from bubble_desktop.core.kb.ocr import RENDER_SCALE

    bitmap = page.render(scale=scale or RENDER_SCALE)
    try:
        return bitmap.to_pil().convert("RGB")
    finally:
        bitmap.close()


def _norm_line(line: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", line.strip())).lower()


def drop_repeated_lines(pages: list[str], edge: int = 2) -> list[str]:
    """Remove running headers/footers: lines among the first/last ``edge`` of a page found on most pages.

    Digits count as equal ("Page 3" and "Page 4" are the same footer). Needs three pages or more.
    """
    filled = [p for p in pages if p.strip()]
    if len(filled) < 3:
        return pages
    counts: dict[str, int] = {}
    for p in filled:
        lines = [ln for ln in p.split("\n") if ln.strip()]
        for key in {_norm_line(ln) for ln in lines[:edge] + lines[-edge:]}:
            counts[key] = counts.get(key, 0) + 1
    need = max(3, int(0.6 * len(filled) + 0.999))
    repeated = {k for k, n in counts.items() if n >= need}
    if not repeated:
        return pages
    out = []
    for p in pages:
        lines = p.split("\n")
        idx = [i for i, ln in enumerate(lines) if ln.strip()]
        edges = set(idx[:edge] + idx[-edge:])
        out.append(
            "\n".join(ln for i, ln in enumerate(lines) if not (i in edges and _norm_line(ln) in repeated))
        )
    return out


def _stop_check(opts: ParseOptions) -> None:
    if opts.should_stop is not None and opts.should_stop():
        raise ParseCancelled


def _ocr_pil(image: Any) -> str:
    from bubble_desktop.core.kb.ocr import lines_text, ocr_image

    return lines_text(ocr_image(image))


def _parse_pdf(data: bytes, opts: ParseOptions, warnings: list[str]) -> list[Segment]:
    pdf = open_pdf(data)
    try:
        n = len(pdf)
        if n == 0:
            raise ParseError("the PDF has no pages")
        texts: list[str] = []
        if PDF_TEXT_ENGINE == "pypdf":
            try:
                texts = pdf_texts_pypdf(data)
            except Exception:  # noqa: BLE001 - pypdf rejects some files PDFium reads: use PDFium's text
                texts = []
        if len(texts) != n:
            texts = []
            for i in range(n):
                page = pdf[i]
                try:
                    texts.append(pdf_page_text_pdfium(page))
                except Exception:  # noqa: BLE001
                    texts.append("")
                finally:
                    page.close()
        texts = [t.replace("\x00", "") for t in texts]
        if opts.ocr == "always":
            todo = list(range(n))
        elif opts.ocr == "never":
            todo = []
        else:
            todo = [i for i in range(n) if not text_layer_usable(texts[i])]
        if len(todo) > opts.ocr_max_pages:
            raise ParseError(
                f"{len(todo)} pages would need OCR; the limit is {opts.ocr_max_pages} "
                "(Settings → Knowledge → OCR page limit)"
            )
        todo_set = set(todo)
        done = 0
        for i in range(n):
            _stop_check(opts)
            if i in todo_set:
                page = pdf[i]
                try:
                    ocr_text = _ocr_pil(render_page(page))
                finally:
                    page.close()
                layer = texts[i]
                if ocr_text.strip() and (
                    opts.ocr == "always"
                    or len(ocr_text.strip()) >= len(layer.strip())
                    or not text_layer_usable(layer)
                ):
                    texts[i] = ocr_text
                if not texts[i].strip():
                    warnings.append(f"page {i + 1}: no text found, even by OCR")
            elif not texts[i].strip():
                warnings.append(f"page {i + 1}: no text layer (OCR is off)")
            done += 1
            if opts.on_page is not None:
                opts.on_page(done, n)
    finally:
        pdf.close()
    texts = drop_repeated_lines(texts)
    return [Segment(t, "page", i + 1) for i, t in enumerate(texts) if t.strip()]


def _parse_image(data: bytes, opts: ParseOptions, warnings: list[str]) -> list[Segment]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise ParseError("not a readable image (broken file, or not the format its name says)") from None
    except Image.DecompressionBombError:
        raise ParseError("refused: the image is too large (over 89 million pixels)") from None
    frames = getattr(img, "n_frames", 1)
    if frames > opts.ocr_max_pages:
        raise ParseError(f"{frames} pages would need OCR; the limit is {opts.ocr_max_pages}")
    out = []
    if opts.ocr == "never":
        raise ParseError("images are read by OCR, and OCR is off (Settings → Knowledge)")
    for i, frame in enumerate(ImageSequence.Iterator(img)):
        _stop_check(opts)
        text = _ocr_pil(frame.convert("RGB"))
        if text.strip():
            out.append(Segment(text, "page", i + 1))
        else:
            warnings.append(f"page {i + 1}: no text found by OCR" if frames > 1 else "no text found by OCR")
        if opts.on_page is not None:
            opts.on_page(i + 1, frames)
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


def _check_archive(data: bytes, required: str, label: str) -> None:
    """A zip-based document: valid archive, has ``required`` inside, and no zip bomb."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            total = sum(i.file_size for i in infos)
            packed = sum(i.compress_size for i in infos) or 1
            if required not in {i.filename for i in infos}:
                raise ParseError(f"not a valid {label} file (no {required} inside)")
    except zipfile.BadZipFile:
        raise ParseError(f"broken {label} file (not a valid zip archive)") from None
    if total > MAX_DOCX_UNPACKED or (total > 20 * 1024 * 1024 and total / packed > MAX_ZIP_RATIO):
        raise ParseError(f"refused: the {label} would unpack to {total // (1024 * 1024)} MB (a zip bomb?)")


def _shape_texts(shapes: Any) -> Iterator[str]:
    for shape in shapes:
        if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            t = shape.text_frame.text.strip()
            if t:
                yield t
        if getattr(shape, "has_table", False) and shape.has_table:
            for row in shape.table.rows:
                cells = [c.text.strip() for c in row.cells if c.text.strip()]
                if cells:
                    yield " | ".join(cells)
        if getattr(shape, "shape_type", None) == 6 and hasattr(shape, "shapes"):  # a group
            yield from _shape_texts(shape.shapes)


def _parse_pptx(data: bytes) -> list[Segment]:
    """One segment per slide (its number is the page): slide text, tables, then the speaker notes."""
    _check_archive(data, "ppt/presentation.xml", ".pptx")
    try:
        from pptx import Presentation

        prs = Presentation(io.BytesIO(data))
        out = []
        for n, slide in enumerate(prs.slides, start=1):
            title = None
            if slide.shapes.title is not None and slide.shapes.title.has_text_frame:
                title = slide.shapes.title.text_frame.text.strip() or None
            parts = list(_shape_texts(slide.shapes))
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    parts.append("Notes: " + notes.text.strip())
            if parts:
                out.append(Segment("\n".join(parts), "slide", n, title))
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - python-pptx/lxml raise many types on broken files
        raise ParseError(f"broken .pptx file ({type(exc).__name__})") from None
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _parse_xlsx(data: bytes) -> list[Segment]:
    """Each sheet's rows as "column: value" lines (the first filled row is the header); sheet = heading."""
    _check_archive(data, "xl/workbook.xml", ".xlsx")
    try:
        import openpyxl

        wb = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        out = []
        try:
            for ws in wb.worksheets:
                header: list[str] | None = None
                for r, row in enumerate(ws.iter_rows(values_only=True), start=1):
                    cells = [_cell(v) for v in row]
                    if not any(cells):
                        continue
                    if header is None:
                        header = cells
                        continue
                    parts = [
                        f"{header[i] if i < len(header) and header[i] else f'column {i + 1}'}: {c}"
                        for i, c in enumerate(cells)
                        if c
                    ]
                    out.append(Segment("\n".join(parts), "row", r, ws.title, atomic=True))
                if header is not None and not any(s.heading == ws.title for s in out):
                    out.append(Segment(" | ".join(c for c in header if c), "row", 1, ws.title, atomic=True))
        finally:
            wb.close()
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - openpyxl raises many types on broken files
        raise ParseError(f"broken .xlsx file ({type(exc).__name__})") from None
    return out


def _parse_epub(data: bytes) -> list[Segment]:
    """Chapters in reading (spine) order; each chapter's first heading is its heading."""
    _check_archive(data, "META-INF/container.xml", ".epub")
    import warnings as _warnings

    from bs4 import BeautifulSoup

    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore")
            from ebooklib import ITEM_DOCUMENT, epub

            book = epub.read_epub(io.BytesIO(data), {"ignore_ncx": True})
        items = []
        for idref, _linear in book.spine:
            item = book.get_item_with_id(idref)
            if (
                item is not None
                and item.get_type() == ITEM_DOCUMENT
                and "nav" not in (getattr(item, "properties", None) or [])
            ):
                items.append(item)
        if not items:
            items = list(book.get_items_of_type(ITEM_DOCUMENT))
        out = []
        n = 0
        for item in items:
            soup = BeautifulSoup(item.get_content(), "html.parser")
            for tag in soup(["script", "style"]):
                tag.decompose()
            h = soup.find(["h1", "h2", "h3"])
            heading = h.get_text(" ", strip=True) if h else None
            body = soup.body or soup
            lines = [ln.strip() for ln in body.get_text("\n").split("\n") if ln.strip()]
            if lines:
                n += 1
                out.append(Segment("\n".join(lines), "chapter", n, heading))
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - ebooklib raises many types on broken files
        raise ParseError(f"broken .epub file ({type(exc).__name__})") from None
    return out


def _parse_odt(data: bytes) -> list[Segment]:
    """Paragraphs under their headings, like .docx."""
    _check_archive(data, "content.xml", ".odt")
    try:
        from odf import teletype
        from odf.namespaces import TEXTNS
        from odf.opendocument import load

        doc = load(io.BytesIO(data))
        blocks: list[tuple[bool, str]] = []

        def walk(node: Any) -> None:
            for child in node.childNodes:
                qn = getattr(child, "qname", None)
                if qn == (TEXTNS, "h") or qn == (TEXTNS, "p"):
                    t = teletype.extractText(child).strip()
                    if t:
                        blocks.append((qn[1] == "h", t))
                elif getattr(child, "childNodes", None):
                    walk(child)

        walk(doc.text)
    except ParseError:
        raise
    except Exception as exc:  # noqa: BLE001 - odfpy raises many types on broken files
        raise ParseError(f"broken .odt file ({type(exc).__name__})") from None
    out: list[Segment] = []
    heading: str | None = None
    buf: list[str] = []
    start = 1
    for n, (is_heading, t) in enumerate(blocks, start=1):
        if is_heading:
            if buf:
                out.append(Segment("\n".join(buf), "paragraph", start, heading))
            heading, buf, start = t, [t], n
        else:
            if not buf:
                start = n
            buf.append(t)
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
    "docx": _parse_docx,
    "pptx": _parse_pptx,
    "xlsx": _parse_xlsx,
    "epub": _parse_epub,
    "odt": _parse_odt,
}
# Parsers that take the options (OCR) and report per-page warnings.
_PAGED_PARSERS: dict[str, Callable[[bytes, ParseOptions, list[str]], list[Segment]]] = {
    "pdf": _parse_pdf,
    "image": _parse_image,
}
