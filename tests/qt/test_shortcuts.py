"""The shortcut sheet is built from the actions, so it lists every one; no key is bound twice."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence

from annotator.qt.actions import ACTIONS, SHEET_TEXT, sheet_rows
from tests.qt.conftest import RecordingEngine


def test_sheet_lists_every_action_with_its_keys(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    sheet = window.show_shortcuts()
    text = sheet.browser.toPlainText()
    bound = [a for a in window.actions.values() if a.shortcuts()]
    assert len(bound) == sum(1 for spec in ACTIONS if spec.shortcuts)
    for action in bound:
        assert action.property(SHEET_TEXT) in text
        for shortcut in action.shortcuts():
            assert shortcut.toString(QKeySequence.SequenceFormat.NativeText) in text
    # Changing a binding changes the sheet (it is read from the actions, not a copy).
    window.actions["fit"].setShortcut(QKeySequence("Ctrl+Alt+F"))
    rows = sheet_rows(window.actions)
    assert any(label == "Fit to Window" and "Ctrl+Alt+F" in keys for _, label, keys in rows)
    for gesture in ("Left click", "Right click", "Left drag"):
        assert gesture in text
    sheet.close()


def test_no_key_is_bound_twice():
    keys = [QKeySequence(k).toString() for spec in ACTIONS for k in spec.shortcuts]
    assert len(keys) == len(set(keys))


def test_issue_bindings():
    by_name = {spec.name: set(spec.shortcuts) for spec in ACTIONS}
    assert by_name["undo"] == {"Ctrl+Z"}
    assert by_name["redo"] == {"Ctrl+Shift+Z", "Ctrl+Y"}
    assert by_name["next_image"] == {"N", "PgDown"}
    assert by_name["previous_image"] == {"P", "PgUp"}
    assert {"Ctrl+S", "Ctrl+Shift+S", "Ctrl+O", "Ctrl+Q", "F1"} <= {
        k for spec in ACTIONS for k in spec.shortcuts
    }
    assert by_name["cycle_candidate"] == {"Tab"} and by_name["hide_overlays"] == {"H"}
