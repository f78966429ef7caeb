"""Video decoding in an isolated child process.

Untrusted files can crash the decoder itself (``shared/data/bad_inputs``: one makes OpenCV abort the whole
Python process). Decoding therefore runs in a child process that writes frames into a ring of
shared-memory slots; the parent only ever sees numpy arrays. If the child dies, hangs or reports an
error, the parent raises :class:`VideoError` naming the source, the frame reached and the decoder's own
message. A bonus of the design: decoding (and the detector's pre-processing, which also runs in the
child) overlaps with inference in the parent, on another core.

Frames are numbered from 0 in decoding order; the container's frame count is never trusted.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from roadside.core.errors import RoadsideError
from roadside.core.redact import redact


class Preprocess(Protocol):
    """Turns a decoded BGR frame into a detector's input tensor (``roadside.models.formats.Preprocess``).
    It is pickled to the decoder process, which runs it beside decoding."""

    height: int
    width: int

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float, float]]: ...


#: Smallest frame side accepted: below this no vehicle covers enough pixels to be detected (the
#: detectors' inputs are 320-640 px), so such a "camera" is misconfigured or the file is not footage.
MIN_FRAME_SIDE = 64


class VideoError(RoadsideError):
    """The video cannot be opened or decoded; the message says which file, where and why."""


@dataclass(frozen=True)
class VideoInfo:
    source: str
    width: int
    height: int
    fps: float
    #: what the container claims; informative only (often wrong)
    frame_count_hint: int


@dataclass
class Frame:
    index: int
    time_s: float  # index / fps for files
    image: np.ndarray  # BGR uint8, valid until the next frame is requested
    tensor: np.ndarray | None  # detector input, when a Preprocess was given
    transform: tuple[float, float, float, float] | None


def _open_capture(source: str):
    import cv2

    if source.isdigit():  # a local camera device
        return cv2.VideoCapture(int(source))
    # One decoding thread: frame-threaded decoding spends ~15% more CPU per frame, and on a small box the
    # detector needs those cycles more than the decoder needs the latency (see `roadside bench`).
    return cv2.VideoCapture(source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach to the parent's segment without letting this process's resource tracker own it
    (Python < 3.13 registers attached segments and would unlink them when the child exits)."""
    from multiprocessing import resource_tracker

    shm = shared_memory.SharedMemory(name=name)
    try:
        resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    except Exception:
        pass
    return shm


def _decoder_main(conn_in: Connection, conn_out: Connection) -> None:
    """Child process: open, report info, then decode into shared-memory slots until EOF or stop.

    Messages to the parent (``conn_out``): ("info", w, h, fps, count), ("attached",) once it holds the
    shared memory, ("frame", index, slot, transform),
    ("eof", n), ("error", index, text). From the parent (``conn_in``): ("go", frame_shm_names,
    tensor_shm_names), then free slot numbers, or None to stop.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    source, preprocess, nice = conn_in.recv()
    if nice:
        os.nice(nice)
    out, ctrl = conn_out, conn_in
    free = conn_in
    cap = None
    try:
        import cv2

        # One thread for OpenCV's own work here: this process runs beside the detector's threads on a
        # small box, and oversubscribing the cores costs more than it gains (see `roadside bench`).
        cv2.setNumThreads(1)
        cap = _open_capture(source)
        if not cap.isOpened():
            out.send(("error", 0, "cannot open: not a readable video (missing/truncated container index, unknown format or codec)"))
            return
        ok, first = cap.read()
        if not ok or first is None:
            out.send(("error", 0, "opened, but no frame could be decoded"))
            return
        fps = cap.get(cv2.CAP_PROP_FPS)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        h, w = first.shape[:2]
        out.send(("info", w, h, float(fps) if fps and fps > 0 and fps < 1000 else 0.0, count))
        msg = ctrl.recv()
        if msg[0] != "go":
            return
        _, frame_names, tensor_names = msg
        frames = [_attach(n) for n in frame_names]
        tensors = [_attach(n) for n in tensor_names]
        out.send(("attached",))  # the parent may now unlink the names: both processes hold the memory
        index = 0
        img = first
        while True:
            if img.shape[:2] != (h, w) or img.ndim != 3:
                out.send(("error", index, f"frame size changed from {w}x{h} to {img.shape[1]}x{img.shape[0]}"))
                return
            slot = free.recv()
            if slot is None:
                return
            np.ndarray((h, w, 3), np.uint8, frames[slot].buf)[:] = img
            transform = None
            if preprocess is not None:
                t, transform = preprocess(img)
                np.ndarray(t.shape, np.float32, tensors[slot].buf)[:] = t
            out.send(("frame", index, slot, transform))
            index += 1
            ok, img = cap.read()
            if not ok or img is None:
                # release first: a decoder that corrupted its memory tends to abort here, and the
                # parent only accepts the file once this process has exited cleanly
                cap.release()
                cap = None
                out.send(("eof", index))
                return
    except Exception as e:  # reported to the parent, which raises VideoError
        out.send(("error", -1, f"{type(e).__name__}: {e}"))
    finally:
        if cap is not None:
            cap.release()


def _spawn_decoder(stderr_path: str, capture_options: str | None = None) -> tuple[subprocess.Popen, Connection, Connection]:
    """Start ``python -m roadside.core.video`` with two pipes (no re-import of the caller's __main__)."""
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    env = None
    if capture_options is not None:
        env = dict(os.environ, OPENCV_FFMPEG_CAPTURE_OPTIONS=capture_options)
    with open(stderr_path, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "roadside.core.video", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, close_fds=True, env=env,
        )
    os.close(to_child_r)
    os.close(from_child_w)
    return proc, Connection(to_child_w, readable=False), Connection(from_child_r, writable=False)


# Niceness of the decoder process when reading a file as fast as the detector goes (replay, bench). The
# detector's threads then win the cores and decoding fills the gaps where they idle (post-processing,
# tracking): on 2 cores, pipeline/detector went from 0.84 to 0.91 for YOLOX-Nano on the freeway clip (median
# of 9 paired runs) and no case got slower. Live sources keep normal priority: they must keep pace with
# the camera, whatever the detector does.
FILE_DECODER_NICE = 19


class VideoReader:
    """Iterate over the frames of a video file (or any OpenCV source) decoded in a child process.

    ``stall_timeout_s``: no frame from the decoder for this long is an error (a hang never blocks us).
    ``capture_options``: OpenCV FFmpeg capture options for the decoder process, e.g. ``"rtsp_transport;tcp"``
    (the format of ``OPENCV_FFMPEG_CAPTURE_OPTIONS``). ``assume_fps``: the frame rate to use when the source
    reports none (some live streams do not); without it such a source is an error. ``cancel``: an event that,
    once set, makes a pending open or read give up at once with a VideoError (used to stop a live source
    promptly). ``decoder_nice``: niceness of the decoder process (see FILE_DECODER_NICE).
    """

    def __init__(self, source: str | Path, preprocess: Preprocess | None = None, slots: int = 6,
                 open_timeout_s: float = 30.0, stall_timeout_s: float = 20.0, capture_options: str | None = None,
                 assume_fps: float | None = None, cancel: threading.Event | None = None, decoder_nice: int = 0):
        self.source = str(source)
        #: how the source is named in messages: never with its password
        self.name = redact(self.source)
        self._cancel = cancel
        self.preprocess = preprocess
        self.frames_read = 0
        self._stall = stall_timeout_s
        self._shm: list[shared_memory.SharedMemory] = []
        self._proc = None
        if "://" not in self.source and not self.source.isdigit():
            p = Path(self.source)
            if not p.exists():
                raise VideoError(f"{self.name}: no such file")
            if not p.is_file():
                raise VideoError(f"{self.name}: not a file")
            if p.stat().st_size == 0:
                raise VideoError(f"{self.name}: the file is empty")
        fd, self._stderr_path = tempfile.mkstemp(prefix="roadside-decoder-", suffix=".log")
        os.close(fd)
        self._proc, self._to_child, self._from_child = _spawn_decoder(self._stderr_path, capture_options)
        try:
            self._to_child.send((self.source, preprocess, decoder_nice))
            msg = self._get(open_timeout_s, "opening")
            if msg[0] == "error":
                raise self._error(msg[1], msg[2])
            _, w, h, fps, count = msg
            if w < MIN_FRAME_SIDE or h < MIN_FRAME_SIDE:
                raise VideoError(f"{self.name}: frames are {w}x{h} pixels, too small to count vehicles in "
                                 f"(at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} is needed)")
            if fps <= 0 and assume_fps:
                fps = float(assume_fps)
            if fps <= 0:
                raise VideoError(f"{self.name}: the video reports no frame rate; cannot time its frames")
            self.info = VideoInfo(self.name, w, h, fps, count)
            fsize = w * h * 3
            self._shm = [shared_memory.SharedMemory(create=True, size=fsize) for _ in range(slots)]
            self._frame_bufs = self._shm[:slots]
            self._tensor_bufs: list[shared_memory.SharedMemory] = []
            if preprocess is not None:
                tsize = 3 * preprocess.height * preprocess.width * 4
                self._tensor_bufs = [shared_memory.SharedMemory(create=True, size=tsize) for _ in range(slots)]
                self._shm += self._tensor_bufs
            self._to_child.send(("go", [s.name for s in self._frame_bufs], [s.name for s in self._tensor_bufs]))
            msg = self._get(open_timeout_s, "attaching the frame buffers")
            if msg[0] == "error":
                raise self._error(msg[1], msg[2])
            self._unlink_names()  # nothing is left in /dev/shm even if this process is killed
            for i in range(slots):
                self._to_child.send(i)
        except BaseException:
            self.close()
            raise
        self._held: int | None = None
        self._done = False

    # -- internals -------------------------------------------------------------------------------
    def _decoder_log(self) -> str:
        try:
            text = Path(self._stderr_path).read_text(errors="replace")
        except OSError:
            return ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return " | ".join(lines[-3:])

    def _error(self, index: int, what: str) -> VideoError:
        where = f" at frame {index}" if index > 0 else ""
        log = self._decoder_log()
        return VideoError(f"{self.name}: {what}{where}" + (f" (decoder says: {redact(log)})" if log else ""))

    def _get(self, timeout: float, doing: str):
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._from_child.poll(0.2):
                    return self._from_child.recv()
            except (EOFError, OSError):
                pass  # the child is gone: find out how below
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                how = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                raise self._error(
                    self.frames_read, f"the decoder crashed ({how}) while {doing}: the file is corrupt or uses an unsupported codec"
                )
            if time.monotonic() > deadline:
                raise self._error(self.frames_read, f"the decoder gave no frame for {timeout:.0f} s while {doing} (stalled)")
            if self._cancel is not None and self._cancel.is_set():
                raise VideoError(f"{self.name}: cancelled while {doing}")

    def _check_clean_exit(self, wait_s: float = 10.0) -> None:
        """After the last frame the decoder must exit with status 0; a crash then means the frames it
        delivered came from a decoder that was corrupting memory, so the file is not trusted."""
        if self._proc is None:
            return
        try:
            code = self._proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return  # close() stops it; a slow exit alone says nothing about the frames
        if code != 0:
            how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            self.close()
            raise self._error(self.frames_read, f"the decoder crashed ({how}) after the last frame: the file is "
                                                "corrupt or uses an unsupported codec, and its frames cannot be trusted")

    def _release_held(self) -> None:
        if self._held is not None:
            try:
                self._to_child.send(self._held)
            except OSError:
                pass  # the decoder has finished or died; the next read says which
            self._held = None

    # -- public ----------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self._done:
            raise StopIteration
        self._release_held()
        msg = self._get(self._stall, f"decoding frame {self.frames_read}")
        kind = msg[0]
        if kind == "eof":
            self._done = True
            self._check_clean_exit()
            self.close()
            raise StopIteration
        if kind == "error":
            self._done = True
            err = self._error(msg[1] if msg[1] >= 0 else self.frames_read, msg[2])
            self.close()
            raise err
        _, index, slot, transform = msg
        self._held = slot
        info = self.info
        image = np.ndarray((info.height, info.width, 3), np.uint8, self._frame_bufs[slot].buf)
        tensor = None
        if self.preprocess is not None:
            p = self.preprocess
            tensor = np.ndarray((1, 3, p.height, p.width), np.float32, self._tensor_bufs[slot].buf)
        self.frames_read = index + 1
        return Frame(index, index / info.fps, image, tensor, transform)

    def close(self, wait_s: float = 2.0) -> None:
        """Stop the decoder (asked first, killed after ``wait_s``: a stalled live stream may never answer)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    self._to_child.send(None)
                except (OSError, ValueError):
                    pass
                try:
                    self._proc.wait(timeout=wait_s)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=5)
            self._proc = None
            self._to_child.close()
            self._from_child.close()
        self._unlink_names()
        for s in self._shm:
            # Never unmap here: a caller may still hold the last frame's arrays, and numpy keeps no
            # buffer export that would stop an unmap, so reading them would crash the process. Drop our
            # handles instead; the mapping lives exactly as long as an array (or this object) uses it.
            s._buf = None  # type: ignore[attr-defined]
            s._mmap = None  # type: ignore[attr-defined]
            s.close()  # now only closes the file descriptor
        self._shm = []
        try:
            os.unlink(self._stderr_path)
        except (OSError, AttributeError):
            pass

    def _unlink_names(self) -> None:
        """Remove the segments' names from /dev/shm; the memory goes when the last mapping of it does."""
        for s in self._shm:
            try:
                s.unlink()
            except FileNotFoundError:
                pass  # unlinked already

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


if __name__ == "__main__":  # the decoder child process (see _spawn_decoder)
    _decoder_main(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False))
