"""Video decoding: real clips decode fully; corrupt, truncated or crashing files give a clear error."""
from __future__ import annotations

import os
import re

import cv2
import numpy as np
import pytest
from helpers.data import BAD, VIDEOS

from roadside.models.formats import default_preprocess
from roadside.core.video import FILE_DECODER_NICE, VideoError, VideoReader


def test_decodes_every_frame_and_ignores_the_container_frame_count():
    with VideoReader(VIDEOS / "freeway_overpass.mp4") as r:
        assert (r.info.width, r.info.height) == (640, 360)
        assert r.info.fps == pytest.approx(29.97, abs=0.01)
        n = sum(1 for _ in r)
    assert n == 984  # the manifest says 983; sequential decoding gives 984 (ground-truth README)


def test_frames_carry_the_detector_input_prepared_in_the_decoder_process():
    pre = default_preprocess("yolox", 416, 416)
    with VideoReader(VIDEOS / "car_park_overhead.mp4", preprocess=pre) as r:
        fr = next(iter(r))
        expected, transform = pre(fr.image)
        assert fr.index == 0 and fr.time_s == 0.0
        np.testing.assert_array_equal(fr.tensor, expected)
        assert fr.transform == transform


def test_file_replays_decode_at_low_priority_and_live_sources_do_not():
    own = os.getpriority(os.PRIO_PROCESS, 0)
    with VideoReader(VIDEOS / "car_park_overhead.mp4", decoder_nice=FILE_DECODER_NICE) as r:
        next(iter(r))
        assert os.getpriority(os.PRIO_PROCESS, r._proc.pid) == min(19, own + FILE_DECODER_NICE)
    with VideoReader(VIDEOS / "car_park_overhead.mp4") as r:  # the live service's default
        next(iter(r))
        assert os.getpriority(os.PRIO_PROCESS, r._proc.pid) == own


def test_truncated_mp4_without_moov_is_a_clear_error():
    with pytest.raises(VideoError) as e:
        VideoReader(BAD / "vehicles_no_moov.mp4")
    msg = str(e.value)
    assert "vehicles_no_moov.mp4" in msg and "cannot open" in msg and "moov atom not found" in msg


def test_file_that_crashes_the_decoder_is_reported_and_we_survive():
    """This file makes OpenCV abort the whole process (at a random point: it corrupts the heap). The
    decoder child dies instead of us, or, when it survives long enough to report the frame size, the
    48x48 frames are refused. Either way a clear error naming the file, and no frames."""
    with pytest.raises(VideoError) as e:
        with VideoReader(BAD / "bgslibrary_demo_48x48_raw.avi") as r:
            for _ in r:
                pass
    msg = str(e.value)
    assert "bgslibrary_demo_48x48_raw.avi" in msg
    assert ("decoder crashed (signal SIGABRT)" in msg) or ("frames are 48x48 pixels, too small" in msg), msg
    # and this process is fine: decode a real clip afterwards
    with VideoReader(VIDEOS / "car_park_overhead.mp4") as r:
        assert next(iter(r)).image.shape == (432, 768, 3)


def test_a_decoder_that_dies_mid_stream_is_an_error_naming_the_frame():
    import signal

    with pytest.raises(VideoError) as e:
        with VideoReader(VIDEOS / "freeway_overpass.mp4") as r:
            for fr in r:
                if fr.index == 20:
                    os.kill(r._proc.pid, signal.SIGABRT)
    msg = str(e.value)
    assert "freeway_overpass.mp4: the decoder crashed (signal SIGABRT)" in msg
    assert int(re.search(r"at frame (\d+)", msg).group(1)) >= 21


def test_frames_too_small_to_count_vehicles_are_refused(tmp_path):
    path = tmp_path / "tiny.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for i in range(10):
        w.write(np.full((32, 32, 3), i * 20, np.uint8))
    w.release()
    with pytest.raises(VideoError, match=r"tiny.avi: frames are 32x32 pixels, too small to count vehicles"):
        VideoReader(path)


def test_not_a_video_missing_or_empty(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 100)
    with pytest.raises(VideoError, match="notes.mp4: cannot open"):
        VideoReader(text)
    with pytest.raises(VideoError, match="no such file"):
        VideoReader(tmp_path / "missing.mp4")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match="the file is empty"):
        VideoReader(empty)


def test_a_hung_decoder_is_an_error_not_a_hang():
    """An RTSP server that accepts the connection and then says nothing: opening times out clearly."""
    import socket
    import time

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    port = srv.getsockname()[1]
    try:
        t0 = time.monotonic()
        with pytest.raises(VideoError, match=r"rtsp://127\.0\.0\.1:\d+/cam: the decoder gave no frame for 3 s while opening \(stalled\)"):
            VideoReader(f"rtsp://127.0.0.1:{port}/cam", open_timeout_s=3)
        assert time.monotonic() - t0 < 20
    finally:
        srv.close()


def _segments() -> set[str]:
    from pathlib import Path

    return {p.name for p in Path("/dev/shm").glob("psm_*")}


def test_frames_kept_after_close_stay_readable_and_nothing_is_left_in_dev_shm():
    import gc

    pre = default_preprocess("picodet", 416, 416)
    with VideoReader(VIDEOS / "freeway_overpass.mp4", preprocess=pre) as r:
        frames = [fr for _, fr in zip(range(3), r)]
        names = {s.name.lstrip("/") for s in r._shm}
        # the names go as soon as the decoder holds the memory: frames flow without any name in /dev/shm
        assert len(names) >= 6 and not (_segments() & names)
    last = frames[-1]
    # the reader is closed: the views must not point at unmapped memory (that would crash this process)
    assert last.image.shape == (360, 640, 3) and float(last.image.mean()) > 0
    assert np.isfinite(last.tensor).all()
    assert not (_segments() & names)
    del frames, last, r
    gc.collect()


def test_a_killed_reader_leaves_nothing_in_dev_shm():
    """A process killed (SIGKILL: power cut, OOM killer) while reading cannot clean up: its segments must
    already be nameless, or each kill leaks frame buffers into /dev/shm (RAM) until the box reboots."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys, time\n"
        "from roadside.core.video import VideoReader\n"
        f"r = VideoReader({str(VIDEOS / 'freeway_overpass.mp4')!r})\n"
        "next(r)\n"
        "print(json.dumps([s.name.lstrip('/') for s in r._shm]), flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        names = set(json.loads(proc.stdout.readline()))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert len(names) == 6
    assert not (_segments() & names)
