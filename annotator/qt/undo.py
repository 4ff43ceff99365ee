"""Binds the Qt-free `annotator.core.commands.UndoStack` to the window's actions and title.

There is one undo mechanism (core.commands); this adapter only mirrors its state into Qt: the
Undo/Redo actions' enabled state and text, and a `clean_changed` signal for the title's "*".
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction

from annotator.core.commands import UndoStack


class UndoBinding(QObject):
    changed = Signal()  # after every push / undo / redo / clean change
    clean_changed = Signal(bool)

    def __init__(self, stack: UndoStack, undo_action: QAction, redo_action: QAction, parent=None):
        super().__init__(parent)
        self.stack = stack
        self.undo_action, self.redo_action = undo_action, redo_action
        self._undo_base, self._redo_base = undo_action.text(), redo_action.text()
        self._was_clean = stack.is_clean()
        stack.add_listener(self._on_stack_changed)
        self._refresh()

    def detach(self) -> None:
        self.stack.remove_listener(self._on_stack_changed)

    def push(self, command) -> None:
        self.stack.push(command)

    def _on_stack_changed(self) -> None:
        self._refresh()
        self.changed.emit()
        clean = self.stack.is_clean()
        if clean != self._was_clean:
            self._was_clean = clean
            self.clean_changed.emit(clean)

    def _refresh(self) -> None:
        undo_text, redo_text = self.stack.undo_text(), self.stack.redo_text()
        self.undo_action.setEnabled(self.stack.can_undo())
        self.redo_action.setEnabled(self.stack.can_redo())
        self.undo_action.setText(f"{self._undo_base} {undo_text}".strip())
        self.redo_action.setText(f"{self._redo_base} {redo_text}".strip())
