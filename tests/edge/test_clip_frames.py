"""Frames of a recorded clip for the manual count (edge/clip_frames.py), on a real clip: the frame index is the
sequential decode index, a step back gives the same frame, the end of the clip is told apart from a decoder that
failed, and a failure does not stick."""
from __future__ import annotations

import os
import signal

import cv2
import numpy as np
import pytest

from helpers.data import VIDEOS
from roadside.core.video import VideoReader
from roadside.edge.clip_frames import ClipError, ClipFrames, PastEnd

CLIP = VIDEOS / "dual_carriageway.mp4"


def test_frames_by_index_the_end_and_a_decoder_that_dies():
    with VideoReader(CLIP) as r:
        decoded = {f.index: f.image.copy() for f in r if f.index in (3, 40)}
        n = r.frames_read
    frames = ClipFrames(CLIP)
    try:
        for i in (3, 40, 3):  # forward, then a step back (the clip is read again from the start)
            got = cv2.imdecode(np.frombuffer(frames.jpeg(i), np.uint8), cv2.IMREAD_COLOR)
            assert got.shape == decoded[i].shape
            assert np.abs(got.astype(int) - decoded[i]).mean() < 3  # the same picture, through JPEG
        assert frames.frames is None  # not known before the end is reached
        with pytest.raises(PastEnd) as past:
            frames.jpeg(n + 50)
        assert past.value.frames == n == frames.frames and "past the end" in str(past.value)
        frames.jpeg(n - 1)  # the last frame is there

        # the decoder dies while reading forward: a failure, not the end of the clip ...
        frames.jpeg(10)
        os.kill(frames._reader._proc.pid, signal.SIGKILL)
        with pytest.raises(ClipError) as failed:
            frames.jpeg(30)
        assert not isinstance(failed.value, PastEnd) and "decoder" in str(failed.value), failed.value
        # ... and the next request starts a fresh decoder
        assert frames.jpeg(30)[:2] == b"\xff\xd8"
    finally:
        frames.close()
