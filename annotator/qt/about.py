"""About dialog: version, the model in use, the device, and the licences of what ships with the app.

Takes plain values (the window knows the model and device); the sample images' licences are read
from the table in resources/samples/LICENSES.md, so the dialog and the file never disagree.
"""

from __future__ import annotations

import platform

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QIcon
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

#: (what, licence) of the software the app is built on, shown under the samples.
SOFTWARE_LICENCES: tuple[tuple[str, str], ...] = (
    ("Annotator", "Apache-2.0"),
    ("Segment Anything (code and checkpoints, Meta)", "Apache-2.0"),
    ("Qt / PySide6", "LGPL-3.0"),
    ("PyTorch", "BSD-3-Clause"),
)


def sample_licences() -> list[tuple[str, str, str]]:
    """(file, what, licence) rows of the table in the bundled samples' LICENSES.md."""
    from importlib.resources import files

    text = (files("annotator.resources") / "samples" / "LICENSES.md").read_text(encoding="utf-8")
    return parse_markdown_table(text)


def parse_markdown_table(text: str) -> list[tuple[str, ...]]:
    """The body rows of the first Markdown table in `text`, cells stripped (header skipped)."""
    rows: list[tuple[str, ...]] = []
    in_table = False
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = tuple(cell.strip() for cell in line.strip("|").split("|"))
        if not in_table:
            in_table = True  # the header row
            continue
        if all(set(cell) <= set("-: ") for cell in cells):
            continue  # the separator row
        rows.append(cells)
    return rows


class AboutDialog(QDialog):
    """Version, model, device, Qt/Python versions, licences of the samples and of the stack."""

    def __init__(
        self,
        version: str,
        model_name: str | None,
        device: str | None,
        *,
        samples: list[tuple[str, str, str]] | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("About Annotator")
        self.setWindowIcon(app_icon())
        from PySide6 import __version__ as pyside_version

        model_text = model_name or "none (classic engine)"
        self._summary = (
            f"Annotator {version}\n"
            f"Model: {model_text}\n"
            f"Device: {device or 'cpu'}\n"
            f"Python {platform.python_version()}, PySide6 {pyside_version}, "
            f"{platform.system()} {platform.release()}"
        )
        layout = QVBoxLayout(self)
        title = QLabel(f"<h2>Annotator {version}</h2>")
        layout.addWidget(title)
        blurb = QLabel(
            "Label images with Segment Anything: click, refine, accept, save as COCO.<br>"
            f"<b>Model:</b> {_escape(model_text)}<br><b>Device:</b> {_escape(device or 'cpu')}"
        )
        blurb.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(blurb)

        layout.addWidget(QLabel("<b>Sample images</b>"))
        self.samples_table = _table(["File", "What", "Licence"], samples or sample_licences())
        layout.addWidget(self.samples_table)
        layout.addWidget(QLabel("<b>Software</b>"))
        self.software_table = _table(["Component", "Licence"], SOFTWARE_LICENCES)
        layout.addWidget(self.software_table)

        versions = QLabel(self._summary.split("\n", 3)[3])
        versions.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(versions)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy details", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(self.copy_details)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(680, self.sizeHint().height())

    def summary(self) -> str:
        """Plain-text version/model/device/platform lines (what "Copy details" copies)."""
        return self._summary

    def copy_details(self) -> None:
        QGuiApplication.clipboard().setText(self._summary)


def _table(headers: list[str], rows) -> QTableWidget:
    table = QTableWidget(len(rows), len(headers))
    table.setHorizontalHeaderLabels(headers)
    table.verticalHeader().setVisible(False)
    table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
    for r, row in enumerate(rows):
        for c, value in enumerate(row[: len(headers)]):
            table.setItem(r, c, QTableWidgetItem(value))
    table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    table.horizontalHeader().setStretchLastSection(True)
    table.resizeRowsToContents()
    # tall enough for every row: these tables are short, a scroll bar would hide a licence
    height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth()
    table.setMinimumHeight(height + sum(table.rowHeight(r) for r in range(table.rowCount())))
    return table


def app_icon() -> QIcon:
    """The app icon from the bundled PNGs (every size, so Qt picks the sharpest)."""
    from importlib.resources import files

    icon = QIcon()
    folder = files("annotator.resources") / "icons"
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        path = folder / f"annotator-{size}.png"
        if path.is_file():
            icon.addFile(str(path))
    return icon


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
