"""Documents built offline for the document tests and bench: text PDFs (CJK font), scans, Office files."""

from __future__ import annotations

import io
from pathlib import Path

CJK_FONTS = (
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "C:/Windows/Fonts/simhei.ttf",
    "/System/Library/Fonts/PingFang.ttc",
)

# Page texts: Chinese + English, each page with a marker of its own; a running header and footer.
PAGES = [
    [
        "Knowledge base manual, chapter one.",
        "知识库可以回答关于你自己文件的问题。",
        "Marker alpha: QX-7301 appears on page one.",
        "扫描的文档也能被检索和引用。",
    ],
    [
        "Installation takes about five minutes.",
        "安装程序会自动检测你的显卡和内存。",
        "Marker beta: ZR-5582 appears on page two.",
        "如果安装失败，请查看日志文件。",
    ],
    [
        "Backups are written every night at two.",
        "备份文件保存在数据目录的子文件夹中。",
        "Marker gamma: KW-9047 appears on page three.",
        "恢复备份之前请先关闭程序。",
    ],
]
HEADER = "O.Bubble Handbook 2026"


def cjk_font() -> str | None:
    for f in CJK_FONTS:
        if Path(f).exists():
            return f
    return None


LATIN_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "C:/Windows/Fonts/arial.ttf")
IMAGE_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "C:/Windows/Fonts/msyh.ttc")


def latin_font() -> str | None:
    return next((f for f in LATIN_FONTS if Path(f).exists()), None)


def image_font(size: int) -> object:
    """A PIL font with both Latin and CJK glyphs."""
    from PIL import ImageFont

    for f in IMAGE_FONTS:
        if Path(f).exists():
            return ImageFont.truetype(f, size)
    return ImageFont.truetype(cjk_font() or "", size)


def text_pdf(path: Path, pages: list[list[str]] = PAGES, header: bool = True) -> Path:
    """A PDF with a real text layer written with a CJK font (fpdf2)."""
    from fpdf import FPDF

    font = cjk_font()
    assert font, "no CJK font found"
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_font("cjk", "", font)
    latin = latin_font()
    if latin:  # CJK fallback fonts often lack Latin glyphs
        pdf.add_font("latin", "", latin)
        pdf.set_fallback_fonts(["cjk"])
    main = "latin" if latin else "cjk"
    for n, lines in enumerate(pages, start=1):
        pdf.add_page()
        pdf.set_font(main, size=10)
        if header:
            pdf.cell(0, 8, HEADER, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(6)
        pdf.set_font(main, size=14)
        for line in lines:
            pdf.cell(0, 12, line, new_x="LMARGIN", new_y="NEXT")
        if header:
            pdf.set_y(-20)
            pdf.set_font(main, size=10)
            pdf.cell(0, 8, f"Page {n}", align="C")
    pdf.output(str(path))
    return path


def scanned_pdf(src: Path, path: Path, scale: float = 2.0, pages: int | None = None) -> Path:
    """``src`` rasterized page by page (PDFium → PIL) and written back as an image-only PDF."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(src))
    images = []
    for i in range(len(doc)):
        page = doc[i]
        images.append(page.render(scale=scale).to_pil().convert("L"))
        page.close()
    doc.close()
    if pages is not None:
        images = [images[i % len(images)] for i in range(pages)]
    images[0].save(path, "PDF", resolution=72 * scale, save_all=True, append_images=images[1:])
    return path


def text_image(lines: list[str], path: Path, size: int = 30) -> Path:
    """A screenshot-like image of ``lines`` (format from the suffix: .png, .jpg, ...)."""
    from PIL import Image, ImageDraw

    font = image_font(size)
    img = Image.new("RGB", (1400, 80 + int(size * 1.8) * len(lines)), "white")
    d = ImageDraw.Draw(img)
    for i, line in enumerate(lines):
        d.text((40, 40 + i * int(size * 1.8)), line, font=font, fill=(20, 20, 20))
    kwargs = {"quality": 90} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    img.save(path, **kwargs)
    return path


def pptx_file(path: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    for n, (title, body, notes) in enumerate(
        [
            ("Quarterly results", "Revenue grew in the north region.", "Speaker note: mention PL-3310."),
            ("季度计划", "下季度重点是南方市场。Marker SL-2207", "备注：记得感谢团队。"),
        ],
        start=1,
    ):
        slide = prs.slides.add_slide(prs.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = notes
        if n == 2:
            box = slide.shapes.add_textbox(Inches(1), Inches(5), Inches(4), Inches(1))
            box.text_frame.text = "Extra box text"
    prs.save(str(path))
    return path


def xlsx_file(path: Path) -> Path:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Inventory"
    ws.append(["item", "count", "warehouse"])
    ws.append(["hammer", 12, "north"])
    ws.append(["螺丝刀", 30, "南方仓库 XL-8812"])
    ws2 = wb.create_sheet("Staff")
    ws2.append(["name", "role"])
    ws2.append(["Alice", "keeper of marker XS-4471"])
    wb.save(str(path))
    return path


def epub_file(path: Path) -> Path:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("bubble-test")
    book.set_title("Test book")
    book.set_language("en")
    chapters = []
    for n, (title, text) in enumerate(
        [
            ("The harbour", "Ships arrive at dawn. Marker EP-6120."),
            ("山中", "山里的雾气很重。标记 EP-7731。"),
        ],
        start=1,
    ):
        c = epub.EpubHtml(title=title, file_name=f"chap{n}.xhtml", lang="en")
        c.content = f"<html><body><h1>{title}</h1><p>{text}</p></body></html>"
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = ["nav", *chapters]
    epub.write_epub(str(path), book)
    return path


def odt_file(path: Path) -> Path:
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P

    doc = OpenDocumentText()
    doc.text.addElement(H(outlinelevel=1, text="Meeting minutes"))
    doc.text.addElement(P(text="The committee approved marker OD-5150."))
    doc.text.addElement(H(outlinelevel=1, text="下一步"))
    doc.text.addElement(P(text="下周提交预算。"))
    buf = io.BytesIO()
    doc.write(buf)
    path.write_bytes(buf.getvalue())
    return path
