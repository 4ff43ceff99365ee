"""Side panels: the image list, the categories, the current image's annotations.

Panels show what the project holds and emit what the person asked for; they never edit the
project themselves (the window turns requests into undoable commands).
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from annotator.core.project import Annotation, Category, Project

ID_ROLE = Qt.ItemDataRole.UserRole


def color_icon(color: tuple[int, int, int], size: int = 14) -> QIcon:
    pixmap = QPixmap(size, size)
    pixmap.fill(QColor(*color))
    return QIcon(pixmap)


def _title(text: str) -> QLabel:
    label = QLabel(text)
    label.setObjectName("panelTitle")
    return label


class ImageListPanel(QWidget):
    """Images in project order with their annotation count and done mark."""

    image_activated = Signal(int)  # index in project.images

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Image", "#", "✓"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.currentItemChanged.connect(self._on_current)
        self.summary = QLabel(self)
        self.summary.setObjectName("panelNote")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(_title("Images"))
        layout.addWidget(self.tree)
        layout.addWidget(self.summary)
        self.project: Project | None = None
        self._updating = False

    def set_project(self, project: Project) -> None:
        self.project = project
        self._updating = True
        self.tree.clear()
        for record in project.images:
            item = QTreeWidgetItem(self.tree)
            item.setData(0, ID_ROLE, record.id)
            self._fill(item, record.id)
        self._updating = False
        self._update_summary()

    def count(self) -> int:
        return self.tree.topLevelItemCount()

    def _fill(self, item: QTreeWidgetItem, image_id: int) -> None:
        record = self.project.image(image_id)
        item.setText(0, record.file_name.replace("\\", "/").rsplit("/", 1)[-1])
        item.setToolTip(0, record.file_name)
        count = self.project.annotation_count(image_id)
        item.setText(1, str(count) if count else "")
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        item.setText(2, "✓" if record.done else "")

    def refresh(self, image_ids=None) -> None:
        """Update the rows of `image_ids` (all when None) after an edit."""
        if self.project is None:
            return
        wanted = None if image_ids is None else set(image_ids)
        for row in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(row)
            image_id = item.data(0, ID_ROLE)
            if (wanted is None or image_id in wanted) and self.project.has_image(image_id):
                self._fill(item, image_id)
        self._update_summary()

    def _update_summary(self) -> None:
        images = self.project.images if self.project else []
        done = sum(1 for r in images if r.done)
        total = self.project.total_annotations() if self.project else 0
        self.summary.setText(f"{len(images)} images · {done} done · {total} annotations")

    def set_current(self, index: int) -> None:
        self._updating = True
        item = self.tree.topLevelItem(index)
        if item is not None:
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
        self._updating = False

    def _on_current(self, current, _previous) -> None:
        if not self._updating and current is not None:
            self.image_activated.emit(self.tree.indexOfTopLevelItem(current))


class CategoryPanel(QWidget):
    """Categories with colour and 1-9 key; the current one labels accepted masks."""

    category_chosen = Signal(int)
    add_requested = Signal()
    rename_requested = Signal(int)
    recolor_requested = Signal(int)
    delete_requested = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setIconSize(QSize(14, 14))
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemDoubleClicked.connect(
            lambda item: self.rename_requested.emit(item.data(ID_ROLE))
        )
        buttons = QHBoxLayout()
        buttons.setSpacing(2)
        self.buttons = {}
        for name, text, tip, signal in (
            ("add", "+", "Add a label", lambda: self.add_requested.emit()),
            ("rename", "Rename", "Rename the label", lambda: self._emit(self.rename_requested)),
            (
                "recolor",
                "Colour",
                "Change the label's colour",
                lambda: self._emit(self.recolor_requested),
            ),
            ("delete", "−", "Delete the label", lambda: self._emit(self.delete_requested)),
        ):
            button = QToolButton(self)
            button.setText(text)
            button.setToolTip(tip)
            button.clicked.connect(signal)
            buttons.addWidget(button)
            self.buttons[name] = button
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(_title("Labels"))
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self._updating = False

    def _emit(self, signal) -> None:
        category_id = self.current_id()
        if category_id is not None:
            signal.emit(category_id)

    def set_categories(self, categories: list[Category], current_id: int | None) -> None:
        self._updating = True
        self.list.clear()
        for index, category in enumerate(categories):
            key = f"{index + 1}  " if index < 9 else "    "
            item = QListWidgetItem(color_icon(category.color), f"{key}{category.name}")
            item.setData(ID_ROLE, category.id)
            self.list.addItem(item)
            if category.id == current_id:
                self.list.setCurrentItem(item)
        self._updating = False

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else item.data(ID_ROLE)

    def set_current_id(self, category_id: int) -> None:
        for row in range(self.list.count()):
            if self.list.item(row).data(ID_ROLE) == category_id:
                self._updating = True
                self.list.setCurrentRow(row)
                self._updating = False

    def _on_current(self, current, _previous) -> None:
        if not self._updating and current is not None:
            self.category_chosen.emit(current.data(ID_ROLE))


class AnnotationPanel(QWidget):
    """The current image's annotations: select (highlighted on the canvas), hide, relabel, delete."""

    selection_changed = Signal(object)  # tuple of annotation ids
    hidden_changed = Signal(object)  # frozenset of hidden annotation ids
    relabel_requested = Signal(object, int)  # ids, category id
    delete_requested = Signal(object)  # ids

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tree = QTreeWidget(self)
        self.tree.setHeaderLabels(["Label", "Area", "ID"])
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.itemSelectionChanged.connect(self._on_selection)
        self.tree.itemChanged.connect(self._on_item_changed)
        header = self.tree.header()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(_title("Annotations"))
        layout.addWidget(self.tree)
        self.hidden: set[int] = set()
        self.categories: list[Category] = []
        self._updating = False

    def set_annotations(self, annotations: list[Annotation], categories: list[Category]) -> None:
        """Show `annotations` (top-most first); keeps selection and hidden state by id."""
        self.categories = categories
        by_id = {c.id: c for c in categories}
        selected = set(self.selected_ids())
        self._updating = True
        self.tree.clear()
        present = {a.id for a in annotations}
        self.hidden &= present
        for annotation in reversed(annotations):
            category = by_id.get(annotation.category_id)
            name = category.name if category else f"? ({annotation.category_id})"
            if annotation.track is not None:  # a sequence: which object this frame shows
                made = ", propagated" if annotation.propagated else ""
                name = f"{name} · track {annotation.track}{made}"
            item = QTreeWidgetItem(self.tree, [name, f"{annotation.area:,}", str(annotation.id)])
            item.setData(0, ID_ROLE, annotation.id)
            if category:
                item.setIcon(0, color_icon(category.color))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            hidden = annotation.id in self.hidden
            item.setCheckState(0, Qt.CheckState.Unchecked if hidden else Qt.CheckState.Checked)
            item.setToolTip(0, "Untick to hide on the canvas")
            item.setSelected(annotation.id in selected)
        self._updating = False
        after = tuple(self.selected_ids())
        if set(after) != selected:  # e.g. a selected annotation was deleted; else nothing to say
            self.selection_changed.emit(after)

    def reset_view_state(self) -> None:
        """A new image: nothing hidden, nothing selected."""
        self.hidden.clear()
        self.tree.clearSelection()

    def selected_ids(self) -> list[int]:
        return [item.data(0, ID_ROLE) for item in self.tree.selectedItems()]

    def select_ids(self, ids) -> None:
        wanted = set(ids)
        for row in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(row)
            item.setSelected(item.data(0, ID_ROLE) in wanted)

    def _on_selection(self) -> None:
        if not self._updating:
            self.selection_changed.emit(tuple(self.selected_ids()))

    def _on_item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if self._updating or column != 0:
            return
        annotation_id = item.data(0, ID_ROLE)
        if item.checkState(0) == Qt.CheckState.Checked:
            self.hidden.discard(annotation_id)
        else:
            self.hidden.add(annotation_id)
        self.hidden_changed.emit(frozenset(self.hidden))

    def _context_menu(self, position) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        menu = QMenu(self)
        relabel = menu.addMenu("Change label to")
        for category in self.categories:
            action = relabel.addAction(color_icon(category.color), category.name)
            action.triggered.connect(
                lambda _=False, cid=category.id: self.relabel_requested.emit(tuple(ids), cid)
            )
        menu.addSeparator()
        delete = menu.addAction("Delete")
        delete.triggered.connect(lambda: self.delete_requested.emit(tuple(ids)))
        menu.exec(self.tree.viewport().mapToGlobal(position))
