"""Small video files for tests, made at run time with OpenCV."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, count: int = 6, size=(48, 64)) -> list[np.ndarray]:
    """An MJPG .avi of `count` frames (a square moving right); returns the frames as OpenCV
    decodes them (RGB)."""
    import cv2

    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    assert writer.isOpened()
    for i in range(count):
        frame = np.full((height, width, 3), 30, np.uint8)
        frame[10:30, 4 + 6 * i : 24 + 6 * i] = (40, 80, 220)
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return frames
