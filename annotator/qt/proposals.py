"""The segment-everything settings dialog (the proposals themselves: annotator.core.proposals)."""

from __future__ import annotations

from dataclasses import fields, replace

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
)

from annotator.engines.automatic import AutoMaskSettings
from annotator.errors import UserError

# ------------------------------------------------------------------------- settings dialog

# (field, label, tooltip) of the settings the dialog shows; the others keep their stored values.
DIALOG_FIELDS = (
    ("points_per_side", "Points per side", "Grid points along each side: points_per_side² prompts"),
    ("pred_iou_thresh", "Predicted IoU threshold", "Keep masks whose predicted IoU is above this"),
    ("stability_score_thresh", "Stability threshold", "Keep masks at least this stable"),
    ("crop_n_layers", "Crop layers", "Also run on crops (layer n has 4ⁿ crops, each encoded)"),
    ("min_mask_region_area", "Minimum region area", "Remove holes and islands below this (px)"),
)


class AutoMaskSettingsDialog(QDialog):
    """The settings dialog: the five everyday settings, with segment_anything's defaults."""

    def __init__(self, settings: AutoMaskSettings, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Segment Everything Settings")
        self._base = settings
        self.spins: dict[str, QSpinBox | QDoubleSpinBox] = {}
        form = QFormLayout()
        for name, label, tip in DIALOG_FIELDS:
            spin = self._make_spin(name)
            spin.setToolTip(tip)
            spin.setValue(getattr(settings, name))
            form.addRow(label, spin)
            self.spins[name] = spin
        self.error_label = QLabel("")
        self.error_label.setStyleSheet("color: #c0392b")
        self.error_label.setWordWrap(True)
        self.button_box = buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults,
            self,
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        restore = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        restore.clicked.connect(self.restore_defaults)
        layout = QVBoxLayout(self)
        note = QLabel("Defaults are segment_anything's SamAutomaticMaskGenerator defaults.")
        note.setWordWrap(True)
        layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(self.error_label)
        layout.addWidget(buttons)

    @staticmethod
    def _make_spin(name: str) -> QSpinBox | QDoubleSpinBox:
        if name in ("pred_iou_thresh", "stability_score_thresh"):
            spin = QDoubleSpinBox()
            spin.setRange(0.0, 1.0)
            spin.setDecimals(3)
            spin.setSingleStep(0.01)
            return spin
        spin = QSpinBox()
        spin.setRange(*{"points_per_side": (1, 256), "crop_n_layers": (0, 4)}.get(name, (0, 10**8)))
        return spin

    def restore_defaults(self) -> None:
        defaults = AutoMaskSettings()
        for name, spin in self.spins.items():
            spin.setValue(getattr(defaults, name))

    def values(self) -> AutoMaskSettings:
        """The stored settings with the dialog's fields replaced; raises UserError if invalid."""
        changes = {name: spin.value() for name, spin in self.spins.items()}
        return replace(self._base, **changes).checked()

    def accept(self) -> None:
        try:
            self.values()
        except UserError as exc:
            self.error_label.setText(str(exc))
            return
        super().accept()


def settings_field_types() -> dict[str, type]:
    """AutoMaskSettings' field names and their types (int or float), in declaration order."""
    defaults = AutoMaskSettings()
    return {f.name: type(getattr(defaults, f.name)) for f in fields(AutoMaskSettings)}
