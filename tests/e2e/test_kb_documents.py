"""Documents as users have them: CJK PDFs, scanned PDFs and screenshots (real RapidOCR), Office/e-book files,
indexed by the real KnowledgeService (real MiniLM, real Qdrant Edge) and found again by search."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest

from bubble_desktop.core.errors import ParseError
from bubble_desktop.core.kb.chunking import chunk_segments
from bubble_desktop.core.kb.parsers import ParseOptions, parse_file
from bubble_desktop.core.kb.types import IngestProgress
from bubble_desktop.core.settings import KnowledgeSettings
from tests.e2e import doc_fixtures as F
from tests.e2e.test_kb_service import make_service

pytestmark = pytest.mark.skipif(F.cjk_font() is None, reason="no CJK font on this machine")


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text)


def similarity(got: str, want: str) -> float:
    return difflib.SequenceMatcher(None, _norm(got), _norm(want), autojunk=False).ratio()


def page_source(n: int) -> str:
    return "\n".join(F.PAGES[n - 1])


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("docs")
    text = F.text_pdf(d / "manual.pdf")
    out = {
        "text_pdf": text,
        "scan_pdf": F.scanned_pdf(text, d / "manual-scan.pdf"),
        "png": F.text_image(F.PAGES[0], d / "shot.png"),
        "jpg": F.text_image(F.PAGES[1], d / "photo.jpg"),
        "pptx": F.pptx_file(d / "deck.pptx"),
        "xlsx": F.xlsx_file(d / "sheet.xlsx"),
        "epub": F.epub_file(d / "book.epub"),
        "odt": F.odt_file(d / "minutes.odt"),
    }
    return out


def test_text_pdf_cjk_pages_and_headers(docs: dict[str, Path]) -> None:
    doc = parse_file(docs["text_pdf"])
    assert [s.start for s in doc.segments] == [1, 2, 3]
    for seg in doc.segments:
        assert similarity(seg.text, page_source(seg.start)) >= 0.98, seg.text
        assert F.HEADER not in seg.text and "Page " not in seg.text  # running header/footer dropped
    chunks = chunk_segments(doc.segments, 500, 80)
    assert [c.page for c in chunks] == [1, 2, 3]
    assert doc.warnings == ()


def test_scanned_pdf_ocr_recovers_95_percent(docs: dict[str, Path]) -> None:
    pages: list[tuple[int, int]] = []
    doc = parse_file(docs["scan_pdf"], ParseOptions(on_page=lambda d, t: pages.append((d, t))))
    assert pages == [(1, 3), (2, 3), (3, 3)]  # per-page progress
    assert [s.start for s in doc.segments] == [1, 2, 3]
    for seg in doc.segments:
        ratio = similarity(seg.text, page_source(seg.start))
        assert ratio >= 0.95, (seg.start, ratio, seg.text)
    chunks = chunk_segments(doc.segments, 500, 80)
    assert any("KW-9047" in c.text and c.page == 3 for c in chunks)


def test_ocr_never_reports_scanned_pages(docs: dict[str, Path]) -> None:
    with pytest.raises(ParseError, match="no text"):
        parse_file(docs["scan_pdf"], ParseOptions(ocr="never"))


def test_ocr_page_limit(docs: dict[str, Path]) -> None:
    with pytest.raises(ParseError, match="limit is 2"):
        parse_file(docs["scan_pdf"], ParseOptions(ocr_max_pages=2))


@pytest.mark.parametrize("key,page", [("png", 1), ("jpg", 2)])
def test_screenshots_ocr(docs: dict[str, Path], key: str, page: int) -> None:
    doc = parse_file(docs[key])
    assert doc.type == "image"
    text = "\n".join(s.text for s in doc.segments)
    assert similarity(text, page_source(page)) >= 0.95, text


def test_blank_page_is_reported(tmp_path: Path) -> None:
    from PIL import Image

    src = F.text_pdf(tmp_path / "one.pdf", pages=[F.PAGES[0]], header=False)
    scan = F.scanned_pdf(src, tmp_path / "scan.pdf")
    from pypdf import PdfReader, PdfWriter

    w = PdfWriter()
    w.append(PdfReader(str(scan)))
    Image.new("L", (600, 800), 255).save(tmp_path / "blank.pdf")
    w.append(PdfReader(str(tmp_path / "blank.pdf")))
    w.write(str(tmp_path / "mixed.pdf"))
    doc = parse_file(tmp_path / "mixed.pdf")
    assert [s.start for s in doc.segments] == [1]
    assert doc.warnings == ("page 2: no text found, even by OCR",)


def test_office_and_ebook_formats(docs: dict[str, Path]) -> None:
    pptx = parse_file(docs["pptx"])
    assert [(s.unit, s.start) for s in pptx.segments] == [("slide", 1), ("slide", 2)]
    assert "PL-3310" in pptx.segments[0].text and "Notes:" in pptx.segments[0].text
    assert [c.page for c in chunk_segments(pptx.segments, 500, 80)] == [1, 2]
    xlsx = parse_file(docs["xlsx"])
    assert {s.heading for s in xlsx.segments} == {"Inventory", "Staff"}
    assert any("warehouse: 南方仓库 XL-8812" in s.text for s in xlsx.segments)
    epub = parse_file(docs["epub"])
    assert any("EP-7731" in s.text and s.heading == "山中" for s in epub.segments)
    odt = parse_file(docs["odt"])
    assert [s.heading for s in odt.segments] == ["Meeting minutes", "下一步"]


def test_service_indexes_and_finds_everything(docs: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\n" + b"garbage " * 100)
    (bad / "fake.png").write_bytes(b"this is not an image at all")
    (bad / "old.doc").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))
    progress: list[IngestProgress] = []
    svc = make_service(KnowledgeSettings())
    try:
        svc.create_base("docs")
        report = svc.add_paths("docs", [*docs.values(), bad], progress=progress.append)
        reasons = {Path(f.path).name: f.reason for f in report.failed}
        assert set(reasons) == {"broken.pdf", "fake.png", "old.doc"}, reasons
        assert "PDFium cannot open" in reasons["broken.pdf"]
        assert "not a readable image" in reasons["fake.png"]
        assert "save it as .docx" in reasons["old.doc"]
        assert len(report.indexed) == len(docs)
        assert any(p.pages_total == 3 and p.parsing_file.endswith("manual-scan.pdf") for p in progress)

        # a marker that exists only in the scanned page 2 (the text PDF has it too: restrict to the scan)
        scan_id = next(d.doc_id for d in svc.documents("docs") if d.path.endswith("manual-scan.pdf"))
        hits = svc.search(["docs"], "ZR-5582 installation", top_k=3, doc_filter=[scan_id])
        assert hits and "ZR-5582" in hits[0].text
        assert hits[0].page == 2 and hits[0].to_json()["page"] == 2
        for marker, name, page in [
            ("SL-2207", "deck.pptx", 2),
            ("XS-4471", "sheet.xlsx", None),
            ("EP-6120", "book.epub", None),
            ("OD-5150", "minutes.odt", None),
            ("QX-7301", "shot.png", 1),
        ]:
            found = svc.search(["docs"], marker, top_k=10)
            match = [h for h in found if Path(h.path).name == name and marker in h.text.replace(" ", "")]
            assert match, (marker, [(h.path, h.text[:60]) for h in found])
            assert match[0].page == page

        # resume: a second run redoes nothing (OCR'd files included; same content hash)
        again = svc.add_paths("docs", [*docs.values()])
        assert set(again.unchanged) == {str(p) for p in docs.values()} and not again.indexed
    finally:
        svc.close()


def test_locate_passage_boxes_text_layer_and_scan(docs: dict[str, Path]) -> None:
    """The viewer's API: the same line boxed on the text PDF (PDFium char boxes) and on its scan (OCR)."""
    from bubble_desktop.core.kb.locate import locate_passage

    line = "Marker gamma: KW-9047 appears on page three."
    text = locate_passage(docs["text_pdf"], 3, line)
    scan = locate_passage(docs["scan_pdf"], 3, line)
    assert text is not None and text.source == "text" and text.coverage >= 0.95
    assert scan is not None and scan.source == "ocr" and scan.coverage >= 0.9
    assert len(text.boxes) == 1 and len(scan.boxes) == 1
    (tx0, ty0, tx1, ty1), (sx0, sy0, sx1, sy1) = text.boxes[0], scan.boxes[0]
    assert abs(tx0 - sx0) < 10 and abs(ty0 - sy0) < 10 and abs(tx1 - sx1) < 15 and abs(ty1 - sy1) < 10
    assert 0 < ty0 < text.height / 2  # top-left origin: the third line sits in the upper half
    # a passage from another page is not placed on this one
    other = locate_passage(docs["text_pdf"], 1, F.PAGES[2][3])
    assert other is None or other.coverage < 0.5 or not other.boxes
    img = locate_passage(docs["png"], 1, "Marker alpha: QX-7301 appears on page one.")
    assert img is not None and img.boxes and img.coverage >= 0.9


def test_cancel_during_ocr_then_resume(docs: dict[str, Path]) -> None:
    """Cancel lands between pages of a scan (not after the whole file); the next run indexes it."""
    import threading

    cancel = threading.Event()
    seen: list[int] = []

    def progress(p: IngestProgress) -> None:
        if p.parsing_file.endswith("manual-scan.pdf") and p.pages_done >= 1:
            seen.append(p.pages_done)
            cancel.set()

    svc = make_service(KnowledgeSettings())
    try:
        svc.create_base("scan")
        first = svc.add_paths("scan", [docs["scan_pdf"]], progress=progress, cancel=cancel)
        assert first.cancelled and not first.indexed
        assert max(seen) < 3  # stopped before the last page
        assert not [d for d in svc.documents("scan") if d.status == "indexed"]
        second = svc.add_paths("scan", [docs["scan_pdf"]])
        assert second.indexed == (str(docs["scan_pdf"]),) and second.ok
        assert svc.add_paths("scan", [docs["scan_pdf"]]).unchanged == (str(docs["scan_pdf"]),)
    finally:
        svc.close()


def test_source_carries_the_page() -> None:
    from bubble_desktop.core.chat.service import hit_to_source
    from bubble_desktop.core.chat.sources import Source
    from bubble_desktop.core.kb.types import Hit

    hit = Hit(0.5, "/docs/report.pdf", "text", "page 12", "kb", "d1", page=12)
    src = hit_to_source(hit, 1)
    assert src.page == 12 and src.page_label == "report.pdf · p. 12"
    again = Source.from_dict(src.to_dict())
    assert again == src
    assert Source.from_dict({"title": "old", "path": "/a.txt"}).page is None  # sources saved before pages
    assert Source.from_dict({"path": "/a.txt", "page": "x"}).page is None
