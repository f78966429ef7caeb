"""Camera passwords never appear in messages or logs."""
from __future__ import annotations

import logging

import pytest

from roadside.core.redact import MASK, RedactingFilter, redact
from roadside.core.video import VideoError, VideoReader

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize("text", [
    f"rtsp://admin:{SECRET}@10.0.0.9:554/live",
    f"cannot open rtsp://admin:{SECRET}@10.0.0.9/stream1 (timeout)",
    f"http://cam.local/mjpeg?user=admin&password={SECRET}&fps=10",
    f"rtsp://u:{SECRET}@a/x and rtsp://v:{SECRET}@b/y",
    f"rtsp://admin:{SECRET}@@host/live",  # an '@' inside the password
])
def test_passwords_are_masked_and_the_rest_is_kept(text):
    out = redact(text)
    assert SECRET not in out and MASK in out
    assert "rtsp://admin:" in out or "user=admin" in out or "rtsp://u:" in out


def test_text_without_secrets_is_unchanged():
    for t in ["rtsp://10.0.0.9/live", "clip.mp4", "frame 12 of /data/a=b.mp4", "http://host/x?fps=5"]:
        assert redact(t) == t


def test_a_video_error_names_the_source_without_its_password():
    with pytest.raises(VideoError) as e:
        # nothing listens on port 9 of loopback: the decoder's own message may quote the URL too
        VideoReader(f"rtsp://admin:{SECRET}@127.0.0.1:9/live", open_timeout_s=5)
    assert SECRET not in str(e.value) and "rtsp://admin:" in str(e.value)


def test_log_records_are_redacted_with_their_arguments_and_tracebacks():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    h = Keep()
    h.addFilter(RedactingFilter())
    log = logging.getLogger("roadside.test.redact")
    log.addHandler(h)
    try:
        log.warning("camera %s: cannot open %s", "c1", f"rtsp://a:{SECRET}@h/x")
        try:
            raise RuntimeError(f"rtsp://a:{SECRET}@h/x refused")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(h)
    assert records and all(SECRET not in r for r in records)
    assert "cannot open rtsp://a:" in records[0] and "RuntimeError" in records[1]
