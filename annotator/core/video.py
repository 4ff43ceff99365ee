"""Video files as image sequences: frames read on demand through OpenCV, never all in memory.

A frame of a video is named like a file inside the video: `<video path>/<frame index, 6 digits>.jpg`
(what the COCO file's `file_name` says, and where export writes the frame as a JPEG). So every
consumer that loads an image by path (`annotator.core.images.load_image`) reads video frames too:
`video_frame_of(path)` tells such a name apart from a file without touching the disk.

Readers are kept open (a few, most recently used) so that stepping frame by frame decodes each
frame once: a read of the next frame continues the decoder, any other index seeks.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.errors import UserError

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"})
FRAME_SUFFIX = ".jpg"
_OPEN_READERS = 2  # videos kept open: the shown one, plus one (propagation of another)


def is_video_file(path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def frame_name(video_name: str, index: int) -> str:
    """The file name of frame `index` of the video called `video_name`."""
    return f"{video_name}/{index:06d}{FRAME_SUFFIX}"


def video_frame_of(path) -> tuple[Path, int] | None:
    """(video path, frame index) when `path` names a frame of a video, else None (by name only)."""
    path = Path(path)
    if path.suffix.lower() != FRAME_SUFFIX or not is_video_file(path.parent):
        return None
    if not path.stem.isdigit():
        return None
    return path.parent, int(path.stem)


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    width: int
    height: int
    fps: float


class _Reader:
    def __init__(self, path: Path) -> None:
        import cv2

        self.path = path
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise UserError(f"OpenCV cannot decode the video {path}.")
        self.next_index = 0  # the frame the decoder gives on the next read
        self.lock = threading.Lock()

    def info(self) -> VideoInfo:
        import cv2

        c = self.capture
        return VideoInfo(
            int(c.get(cv2.CAP_PROP_FRAME_COUNT)),
            int(c.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(c.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            float(c.get(cv2.CAP_PROP_FPS) or 0.0),
        )

    def read(self, index: int) -> np.ndarray:
        import cv2

        with self.lock:
            if index != self.next_index:
                self.capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, frame = self.capture.read()
            if not ok or frame is None:
                self.next_index = -1  # the decoder's position is unknown now: seek next time
                raise UserError(f"Frame {index} of {self.path.name} cannot be decoded.")
            self.next_index = index + 1
            return np.ascontiguousarray(frame[..., ::-1])  # BGR -> RGB

    def close(self) -> None:
        self.capture.release()


_readers: OrderedDict[str, _Reader] = OrderedDict()
_readers_lock = threading.Lock()


def _reader(video: Path) -> _Reader:
    key = str(video)
    with _readers_lock:
        reader = _readers.get(key)
        if reader is not None:
            _readers.move_to_end(key)
            return reader
    if not Path(video).is_file():
        raise UserError(f"The video {video} does not exist.")
    reader = _Reader(Path(video))
    with _readers_lock:
        _readers[key] = reader
        while len(_readers) > _OPEN_READERS:
            _, old = _readers.popitem(last=False)
            with old.lock:
                old.close()
    return reader


_probed: dict[tuple, VideoInfo] = {}


def probe_video(video: Path) -> VideoInfo:
    """Frame count and size; raises UserError (one sentence) for a video OpenCV cannot decode.
    Remembered per file version (every frame's size is asked for when a project is made)."""
    try:
        stat = Path(video).stat()
    except OSError:
        raise UserError(f"The video {video} does not exist.") from None
    key = (str(video), stat.st_mtime_ns, stat.st_size)
    if key not in _probed:
        _probed[key] = _probe(Path(video))
    return _probed[key]


def _probe(video: Path) -> VideoInfo:
    reader = _reader(Path(video))
    info = reader.info()
    try:
        first = reader.read(0)
    except UserError:
        raise UserError(
            f"OpenCV cannot decode the video {video}: its first frame is unreadable."
        ) from None
    if info.frame_count <= 0:
        raise UserError(f"OpenCV cannot tell how many frames the video {video} has.")
    height, width = first.shape[:2]
    return VideoInfo(info.frame_count, width, height, info.fps)


def frame_paths(video: Path) -> list[Path]:
    """The names of every frame of `video` (`frame_name`), as absolute paths."""
    video = Path(video).absolute()
    count = probe_video(video).frame_count
    return [video / Path(frame_name("", i)).name for i in range(count)]


def read_frame(video: Path, index: int) -> np.ndarray:
    """Frame `index` (from 0) of `video` as HxWx3 uint8 RGB; UserError when it cannot be decoded."""
    return _reader(Path(video)).read(int(index))


def close_all() -> None:
    """Release every open reader (tests, shutdown)."""
    with _readers_lock:
        readers = list(_readers.values())
        _readers.clear()
    for reader in readers:
        with reader.lock:
            reader.close()
