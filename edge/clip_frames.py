"""Frames of a recorded clip for the calibration page's manual count: JPEG by frame index, decoded in the
crash-isolated decoder process (core/video.py) and read forward (a step back reopens the clip), so that
playing at any speed costs one sequential decode, and the frame index is the 0-based index of the frame as
decoded sequentially, the convention of the ground truth (shared/data/gt/README.md)."""
from __future__ import annotations

import threading
from pathlib import Path

from roadside.core.errors import RoadsideError
from roadside.core.video import VideoError, VideoReader

#: what counts as a recorded clip in the camera's folder
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".m4v", ".webm", ".ts")


class ClipError(RoadsideError):
    """The clip cannot be opened or decoded (or a frame index below 0)."""


class PastEnd(ClipError):
    """The frame asked for is past the clip's last frame; ``frames`` is the clip's length."""

    def __init__(self, message: str, frames: int):
        super().__init__(message)
        self.frames = frames


def clips_beside(source: str) -> dict[str, Path]:
    """The recorded clips in the folder of a camera's video file (none for a stream or device): name -> path."""
    if "://" in source or source.isdigit():
        return {}
    folder = Path(source).parent
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES}


class ClipFrames:
    """One open clip, read forward: ``jpeg(i)`` is frame ``i``."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._reader: VideoReader | None = None
        self._next = 0  # index of the frame the reader gives next
        self._last: tuple[int, bytes] | None = None
        self.frames: int | None = None  # known once the end was reached
        try:
            self.info = self._open().info
        except VideoError as e:
            raise ClipError(str(e)) from None

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _past_end(self, index: int) -> PastEnd:
        return PastEnd(f"{self.path.name}: frame {index} is past the end ({self.frames} frames)", self.frames)

    def _open(self) -> VideoReader:
        self._drop_reader()
        self._reader = VideoReader(self.path, slots=2)
        self._next = 0
        return self._reader

    def describe(self) -> dict:
        return {"clip": self.path.name, "fps": self.info.fps, "width": self.info.width, "height": self.info.height,
                "frames": self.frames, "frames_hint": self.info.frame_count_hint}

    def jpeg(self, index: int, quality: int = 80) -> bytes:
        import cv2

        if index < 0:
            raise ClipError(f"{self.path.name}: frame {index} does not exist (frames start at 0)")
        with self._lock:
            if self._last is not None and self._last[0] == index:
                return self._last[1]
            if self.frames is not None and index >= self.frames:
                raise self._past_end(index)
            try:
                if index < self._next or self._reader is None:
                    self._open()  # a step back (or after a failure) reads from the start again
                for fr in self._reader:
                    self._next = fr.index + 1
                    if fr.index == index:
                        ok, buf = cv2.imencode(".jpg", fr.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
                        if not ok:
                            raise ClipError(f"{self.path.name}: frame {index} cannot be encoded")
                        self._last = (index, buf.tobytes())
                        return self._last[1]
            except VideoError as e:
                self._drop_reader()  # the next request starts from a fresh decoder
                raise ClipError(str(e)) from None
            self.frames = self._next
            raise self._past_end(index)

    def close(self) -> None:
        with self._lock:
            self._drop_reader()


__all__ = ["ClipError", "ClipFrames", "PastEnd", "VIDEO_SUFFIXES", "clips_beside"]
