"""Render resources/icons/annotator.svg to the PNG, ICO (Windows) and ICNS (macOS) icons.

    .venv/bin/python packaging/render_icons.py

Writes resources/icons/annotator-{16,24,32,48,64,128,256,512}.png, annotator.ico and
annotator.icns. The outputs are committed, so building the app needs no SVG renderer; run this
again after editing the SVG. Uses PySide6's QtSvg (in PySide6-Essentials) and Pillow.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG drawn on a transparent size x size canvas, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(0)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (fonts, plugins)
    svg = ICONS / "annotator.svg"
    images = {}
    for size in SIZES:
        png = render_png(svg, size)
        (ICONS / f"annotator-{size}.png").write_bytes(png)
        images[size] = Image.open(io.BytesIO(png)).convert("RGBA")
        print(f"annotator-{size}.png")
    largest = images[256]
    largest.save(
        ICONS / "annotator.ico",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[images[s] for s in ICO_SIZES if s != 256],
    )
    print("annotator.ico")
    images[512].save(ICONS / "annotator.icns", append_images=[images[s] for s in (16, 32, 64)])
    print("annotator.icns")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
