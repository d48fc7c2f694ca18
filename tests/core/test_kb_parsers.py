"""Parsers: every supported type, detected encodings, and every bad-file case with its reason."""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubble_desktop.core.errors import ParseError
from bubble_desktop.core.kb.parsers import decode_text, iter_files, parse_file

ZH = "知识库让聊天机器人回答你自己文件里的问题。北京是中国的首都，长城很长。"
ZH_TW = "知識庫讓聊天機器人回答你自己檔案裡的問題。臺北是一座城市，風景很美。"


def make_pdf(pages: list[str | None], password: str | None = None) -> bytes:
    """A PDF with one line of Helvetica text per page (None: a page with no text layer)."""
    from pypdf import PdfWriter
    from pypdf.generic import DictionaryObject, NameObject, StreamObject

    w = PdfWriter()
    for text in pages:
        page = w.add_blank_page(612, 792)
        if text is None:
            continue
        font = DictionaryObject(
            {
                NameObject("/Type"): NameObject("/Font"),
                NameObject("/Subtype"): NameObject("/Type1"),
                NameObject("/BaseFont"): NameObject("/Helvetica"),
            }
        )
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): w._add_object(font)})}
        )
        stream = StreamObject()
        stream.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = w._add_object(stream)
    if password:
        w.encrypt(password)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def make_docx(path: Path) -> Path:
    import docx

    d = docx.Document()
    d.add_heading("Refund policy", level=1)
    d.add_paragraph("Customers may return goods within 30 days.")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Product"
    table.cell(0, 1).text = "Warranty"
    table.cell(1, 0).text = "Kettle"
    table.cell(1, 1).text = "Two years"
    d.add_heading("Shipping", level=1)
    d.add_paragraph("We ship worldwide.")
    d.save(str(path))
    return path


def reason(path: Path) -> str:
    with pytest.raises(ParseError) as info:
        parse_file(path)
    return info.value.message


def texts(path: Path) -> str:
    return "\n".join(s.text for s in parse_file(path).segments)


@pytest.mark.parametrize(
    "encoding,text",
    [
        ("gbk", ZH),
        ("gb18030", ZH + "𠀀"),
        ("big5", ZH_TW),
        ("utf-16", ZH),
        ("utf-8-sig", ZH),
        ("utf-8", ZH),
        ("utf-16-le", "plain ascii text in utf sixteen without a byte order mark " * 3),
    ],
)
def test_encodings_are_detected(tmp_path: Path, encoding: str, text: str) -> None:
    f = tmp_path / f"doc-{encoding}.txt"
    f.write_bytes(text.encode(encoding))
    assert texts(f) == text


def test_gbk_file_as_chinese_windows_saves_it(tmp_path: Path) -> None:
    body = "\r\n".join([ZH, "第二行：价格是一百元。", "第三行：联系电话在下面。"] * 5)
    f = tmp_path / "说明.txt"
    f.write_bytes(body.encode("gbk"))
    doc = parse_file(f)
    assert "价格是一百元" in doc.segments[0].text and "\r" not in doc.segments[0].text


@settings(max_examples=40, deadline=None)
@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=200),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]),
)
def test_decoding_round_trips_unicode(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding))[0] == text


def test_qa_lines(tmp_path: Path) -> None:
    f = tmp_path / "faq.txt"
    f.write_text("怎么重置密码##在设置页面点击重置密码\n\n营业时间##每天九点到五点\n", encoding="utf-8")
    segs = parse_file(f).segments
    assert [(s.title, s.text, s.start) for s in segs] == [
        ("怎么重置密码", "在设置页面点击重置密码", 1),
        ("营业时间", "每天九点到五点", 3),
    ]
    assert all(s.standalone for s in segs)


def test_markdown_keeps_headings(tmp_path: Path) -> None:
    f = tmp_path / "a.md"
    f.write_text("intro\n\n# Cats\n\nCats purr.\n\n```\n# not a heading\n```\n## Dogs\nDogs bark.\n")
    segs = parse_file(f).segments
    assert [(s.heading, s.start) for s in segs] == [(None, 1), ("Cats", 3), ("Dogs", 10)]


def test_csv_rows(tmp_path: Path) -> None:
    f = tmp_path / "t.csv"
    f.write_text("name,city\nAda,London\n\nLin,北京\n", encoding="utf-8")
    segs = parse_file(f).segments
    assert [(s.text, s.unit, s.start) for s in segs] == [
        ("name: Ada\ncity: London", "row", 1),
        ("name: Lin\ncity: 北京", "row", 3),
    ]


def test_json_and_jsonl(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"product": {"name": "Kettle", "price": 20}}')
    assert texts(tmp_path / "a.json") == "product.name: Kettle\nproduct.price: 20"
    (tmp_path / "b.jsonl").write_text('{"q": "one"}\n{"q": "two"}\n')
    assert [s.start for s in parse_file(tmp_path / "b.jsonl").segments] == [1, 2]
    (tmp_path / "c.json").write_text("{broken")
    assert "broken JSON" in reason(tmp_path / "c.json")


def test_html(tmp_path: Path) -> None:
    f = tmp_path / "p.html"
    f.write_text(
        "<html><head><title>Guide</title><script>var x=1;</script></head><body>"
        "<h1>Install</h1><p>Run the installer.</p><h2>Use</h2><ul><li>Open the app.</li></ul></body></html>"
    )
    segs = parse_file(f).segments
    assert [(s.heading, s.text) for s in segs] == [
        ("Install", "Install\nRun the installer."),
        ("Use", "Use\nOpen the app."),
    ]
    assert "var x" not in texts(f)


def test_docx_with_table(tmp_path: Path) -> None:
    segs = parse_file(make_docx(tmp_path / "policy.docx")).segments
    joined = "\n".join(s.text for s in segs)
    assert "Kettle | Two years" in joined and "within 30 days" in joined
    assert [s.heading for s in segs] == ["Refund policy", "Shipping"]


def test_pdf_pages(tmp_path: Path) -> None:
    f = tmp_path / "a.pdf"
    f.write_bytes(make_pdf(["First page text", None, "Third page text"]))
    segs = parse_file(f).segments
    assert [(s.unit, s.start, s.text) for s in segs] == [
        ("page", 1, "First page text"),
        ("page", 3, "Third page text"),
    ]


@pytest.mark.parametrize(
    "name,content,expected",
    [
        ("scanned.pdf", lambda: make_pdf([None, None]), "no text found, not even by OCR"),
        ("locked.pdf", lambda: make_pdf(["secret"], password="pw"), "encrypted PDF"),
        (
            "corrupt.pdf",
            lambda: b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ngarbage\n%%EOF",
            "corrupt or unreadable PDF",
        ),
        ("truncated.pdf", lambda: make_pdf(["text"])[:150], "PDF"),
        ("broken.docx", lambda: b"PK\x03\x04 this is not really a zip", "broken .docx"),
        ("empty.txt", lambda: b"", "empty file (0 bytes)"),
        ("photo.png", lambda: b"\x89PNG\r\n\x1a\n" + bytes(100), "not a readable image"),
        ("blob.dat", lambda: bytes(range(256)) * 40, "binary file"),
        ("minified.txt", lambda: b"x" * (20 * 1024 * 1024), "a single line of 21.0 million characters"),
    ],
)
def test_bad_files_are_reported_with_a_reason(tmp_path: Path, name: str, content, expected: str) -> None:
    f = tmp_path / name
    f.write_bytes(content())
    assert expected in reason(f)


def test_docx_zip_bomb_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "bomb.docx"
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", "<w:document/>")
        zf.writestr("word/media/huge.bin", b"\0" * (300 * 1024 * 1024))
    assert "zip bomb" in reason(f)


def test_docx_without_document_part(tmp_path: Path) -> None:
    f = tmp_path / "odd.docx"
    with zipfile.ZipFile(f, "w") as zf:
        zf.writestr("hello.txt", "hi")
    assert "not a valid .docx" in reason(f)


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    assert reason(tmp_path / "missing.txt") == "file not found"
    f = tmp_path / "secret.txt"
    f.write_text("x")
    f.chmod(0)
    try:
        if f.stat().st_mode and not _can_read(f):
            assert "permission denied" in reason(f)
    finally:
        f.chmod(0o644)


def _can_read(f: Path) -> bool:
    try:
        f.read_bytes()
        return True
    except PermissionError:
        return False


def test_folders_recursive_hidden_skipped(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    (tmp_path / "a" / "b" / "deep.md").write_text("x")
    (tmp_path / "a" / ".secret.txt").write_text("x")
    (tmp_path / ".git" / "config").write_text("x")
    (tmp_path / "top.txt").write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in iter_files([tmp_path])]
    assert found == ["top.txt", "a/b/deep.md"] or sorted(found) == ["a/b/deep.md", "top.txt"]


def test_bom_less_utf16_big_endian() -> None:
    raw = ("Hello there, this is UTF-16 BE text. " * 4).encode("utf-16-be")
    assert decode_text(raw)[1] == "utf-16-be"
    assert decode_text(codecs.BOM_UTF16_BE + raw)[0].startswith("Hello")
