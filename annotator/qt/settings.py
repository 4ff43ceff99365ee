"""What the window remembers across runs, in one INI file under the user's config folder.

An INI file at `paths.config_dir()/settings.ini` (not the platform registry) so tests, which point
ANNOTATOR_CONFIG_DIR at a temp folder, never touch the real user's settings.
"""

from __future__ import annotations

from PySide6.QtCore import QByteArray, QSettings

from annotator import paths
from annotator.engines.automatic import AutoMaskSettings
from annotator.errors import UserError

MAX_RECENT = 10


class Settings:
    def __init__(self) -> None:
        folder = paths.config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        self.qsettings = QSettings(str(folder / "settings.ini"), QSettings.Format.IniFormat)

    def _str(self, key: str, default: str = "") -> str:
        value = self.qsettings.value(key, default)
        return str(value) if value is not None else default

    @property
    def checkpoint(self) -> str:
        return self._str("model/checkpoint")

    @checkpoint.setter
    def checkpoint(self, value: str | None) -> None:
        self.qsettings.setValue("model/checkpoint", value or "")

    @property
    def model_choice_made(self) -> bool:
        """The person has answered the first-run dialog once (a model or the classic engine)."""
        return str(self.qsettings.value("model/choice_made", "false")).lower() == "true"

    @model_choice_made.setter
    def model_choice_made(self, value: bool) -> None:
        self.qsettings.setValue("model/choice_made", "true" if value else "false")

    @property
    def device(self) -> str:
        return self._str("model/device", "auto") or "auto"

    @device.setter
    def device(self, value: str) -> None:
        self.qsettings.setValue("model/device", value)

    @property
    def opacity(self) -> float:
        try:
            return min(1.0, max(0.0, float(self.qsettings.value("view/opacity", 0.45))))
        except (TypeError, ValueError):
            return 0.45

    @opacity.setter
    def opacity(self, value: float) -> None:
        self.qsettings.setValue("view/opacity", float(value))

    @property
    def geometry(self) -> QByteArray | None:
        value = self.qsettings.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self.qsettings.setValue("window/geometry", value)

    @property
    def window_state(self) -> QByteArray | None:
        value = self.qsettings.value("window/state")
        return value if isinstance(value, QByteArray) else None

    @window_state.setter
    def window_state(self, value: QByteArray) -> None:
        self.qsettings.setValue("window/state", value)

    @property
    def recent_projects(self) -> list[str]:
        value = self.qsettings.value("recent/projects", [])
        if isinstance(value, str):  # QSettings returns a lone item as a plain string
            value = [value]
        return [str(v) for v in (value or []) if v]

    def add_recent_project(self, path: str) -> None:
        recent = [path] + [p for p in self.recent_projects if p != path]
        self.qsettings.setValue("recent/projects", recent[:MAX_RECENT])

    @property
    def auto_mask_settings(self) -> AutoMaskSettings:
        """Segment-everything settings: segment_anything's defaults, with what the person set.

        Every AutoMaskSettings field is stored (the dialog shows five; the rest can be set here).
        A stored value that does not parse, or a set that fails `checked()`, gives the defaults.
        """
        from dataclasses import fields

        defaults = AutoMaskSettings()
        values = {}
        for field in fields(AutoMaskSettings):
            default = getattr(defaults, field.name)
            raw = self.qsettings.value(f"segment_everything/{field.name}", default)
            try:
                values[field.name] = type(default)(raw)
            except (TypeError, ValueError):
                values[field.name] = default
        try:
            return AutoMaskSettings(**values).checked()
        except UserError:  # a hand-edited INI file out of range: never block the action
            return defaults

    @auto_mask_settings.setter
    def auto_mask_settings(self, value: AutoMaskSettings) -> None:
        for name, item in value.checked().generator_kwargs().items():
            self.qsettings.setValue(f"segment_everything/{name}", item)

    @property
    def embedding_store(self) -> str:
        """The shared embedding store (a folder or fsspec URL) read on a local cache miss;
        $ANNOTATOR_EMBEDDING_STORE wins over it. Empty: none."""
        return self._str("embedding_store/location").strip()

    @embedding_store.setter
    def embedding_store(self, value: str | None) -> None:
        self.qsettings.setValue("embedding_store/location", value or "")

    @property
    def embedding_store_contribute(self) -> bool:
        """Whether the window also writes the embeddings it computes to the store (default:
        read only, so a laptop never overwrites what the batch run wrote)."""
        return str(self.qsettings.value("embedding_store/contribute", "false")).lower() == "true"

    @embedding_store_contribute.setter
    def embedding_store_contribute(self, value: bool) -> None:
        self.qsettings.setValue("embedding_store/contribute", "true" if value else "false")

    def sync(self) -> None:
        self.qsettings.sync()
