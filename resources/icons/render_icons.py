"""Render resources/icons/bubble.svg to PNG sizes and a Windows .ico (run after editing the SVG).

    .venv/bin/python resources/icons/render_icons.py

The .ico holds PNG-compressed images (valid since Windows Vista), so no Pillow is needed.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PySide6.QtSvg import QSvgRenderer  # noqa: E402

HERE = Path(__file__).resolve().parent
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(renderer: QSvgRenderer, size: int) -> bytes:
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return bytes(data.data())


def write_ico(path: Path, images: dict[int, bytes]) -> None:
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries, blobs = b"", b""
    for size, png in sorted(images.items()):
        dim = 0 if size >= 256 else size  # 0 means 256 in the ICO directory
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(png), offset + len(blobs))
        blobs += png
    path.write_bytes(header + entries + blobs)


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv)  # noqa: F841
    renderer = QSvgRenderer(str(HERE / "bubble.svg"))
    if not renderer.isValid():
        print("bubble.svg is not valid SVG", file=sys.stderr)
        return 1
    pngs = {s: render(renderer, s) for s in PNG_SIZES}
    for size, png in pngs.items():
        (HERE / f"bubble-{size}.png").write_bytes(png)
    write_ico(HERE / "bubble.ico", {s: pngs[s] for s in ICO_SIZES})
    print(f"wrote {len(pngs)} PNGs and bubble.ico to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
