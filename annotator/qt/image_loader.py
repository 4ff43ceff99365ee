"""Decode images for display on a thread pool, so opening a 100-MP image never freezes the window.

The result is a `DisplayImage`: the full-resolution QImage and its pyramid of halvings (built off
the GUI thread too). Each request carries a token; the window ignores results whose token is not
the latest (the user already moved on).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from annotator.errors import UserError
from annotator.qt.overlay import build_pyramid, rgb_to_qimage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DisplayImage:
    levels: tuple[QImage, ...]  # [full, 1/2, 1/4, ...]

    @property
    def width(self) -> int:
        return self.levels[0].width()

    @property
    def height(self) -> int:
        return self.levels[0].height()


def display_image_from_file(path: str) -> DisplayImage:
    """Same pixels as the model sees (`load_image`: EXIF rotation, RGB8), for the canvas."""
    from annotator.core.images import load_image

    return DisplayImage(tuple(build_pyramid(rgb_to_qimage(load_image(path)))))


class ImageLoader(QObject):
    """`load(path, annotations) -> token`; emits `loaded(token, path, DisplayImage, masks)` or
    `failed(...)`. masks: {annotation id: (its RLE, HxW bool mask)} of the given annotations (frozen values,
    safe to read on this thread), decoded here so a page turn costs the GUI thread no decoding.

    One background thread; a request that is no longer the latest when its turn comes is skipped
    (the user paged past that image), so fast paging does not queue up decodes.
    """

    loaded = Signal(int, str, object, object)
    failed = Signal(int, str, str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-images")
        self.token = 0

    def load(self, path: str, annotations=()) -> int:
        self.token += 1
        self.executor.submit(self._run, self.token, path, tuple(annotations))
        return self.token

    def _run(self, token: int, path: str, annotations) -> None:
        if token != self.token:
            return
        try:
            image = display_image_from_file(path)
        except Exception as exc:  # UserError's sentence, or a decoder failure
            if not isinstance(exc, UserError):
                log.warning("could not show %s", path, exc_info=True)
            self.failed.emit(token, path, str(exc))
            return
        masks = {}
        for annotation in annotations:
            if token != self.token:
                return  # paged on meanwhile
            if tuple(annotation.rle.get("size", ())) != (image.height, image.width):
                continue  # a stale record size: the window will not draw it either
            try:
                masks[annotation.id] = (annotation.rle, annotation.mask())
            except ValueError:  # a corrupt RLE: the GUI thread reports it when it draws
                continue
        self.loaded.emit(token, path, image, masks)  # queued to the GUI thread

    def shutdown(self) -> None:
        self.token += 1  # queued loads skip themselves
        self.executor.shutdown(wait=True)
