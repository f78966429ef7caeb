"""The store-and-forward outbox: durable seq allocation, order, acknowledgement, bounds, crash safety."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from roadside.edge.outbox import Outbox, OutboxError


def _payload(camera: str):
    return lambda seq: json.dumps({"camera": camera, "seq": seq, "pad": "x" * 100}).encode()


def test_seq_is_per_camera_monotonic_and_survives_reopening(tmp_path):
    db = tmp_path / "outbox.sqlite"
    box = Outbox(db)
    assert [box.add("a", "t/a", _payload("a")) for _ in range(3)] == [0, 1, 2]
    assert box.add("b", "t/b", _payload("b")) == 0
    box.close()
    box = Outbox(db)
    assert box.add("a", "t/a", _payload("a")) == 3
    assert box.next_seq("b") == 1 and box.next_seq("never") == 0
    msgs = box.pending()
    # stored in production order, each payload built with its own seq
    assert [(m.camera, m.seq) for m in msgs] == [("a", 0), ("a", 1), ("a", 2), ("b", 0), ("a", 3)]
    assert all(json.loads(m.payload)["seq"] == m.seq for m in msgs)
    assert box.stats().depth == 5


def test_ack_removes_only_acknowledged_and_seq_is_never_reused(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    for _ in range(5):
        box.add("a", "t", _payload("a"))
    msgs = box.pending()
    assert box.ack([msgs[0].id, msgs[2].id, 999999]) == 2
    assert [m.seq for m in box.pending()] == [1, 3, 4]
    assert [m.seq for m in box.pending(after_id=msgs[3].id)] == [4]
    assert box.ack([m.id for m in box.pending()]) == 3
    st = box.stats()
    assert st.depth == 0 and st.bytes == 0 and st.oldest_age_s is None
    # an empty outbox still remembers where the sequence is
    assert box.add("a", "t", _payload("a")) == 5


def test_byte_bound_drops_the_oldest_counts_and_records_them(tmp_path):
    size = len(_payload("a")(0))
    box = Outbox(tmp_path / "o.sqlite", max_bytes=10 * size + size // 2)
    for _ in range(25):
        box.add("a", "t", _payload("a"))
    st = box.stats()
    assert st.depth == 10 and st.bytes <= box.max_bytes
    assert [m.seq for m in box.pending()] == list(range(15, 25))
    assert st.dropped == {"a": 15}
    assert box.dropped_ranges() == [{"camera": "a", "first_seq": 0, "last_seq": 14, "reason": "max_bytes",
                                     "at": pytest.approx(box.dropped_ranges()[0]["at"])}]
    # the count survives a restart
    box.close()
    assert Outbox(tmp_path / "o.sqlite", max_bytes=10 * size + size // 2).stats().dropped == {"a": 15}


def test_age_bound_drops_expired_messages(tmp_path):
    now = [1000.0]
    box = Outbox(tmp_path / "o.sqlite", max_age_s=60, clock=lambda: now[0])
    box.add("a", "t", _payload("a"))
    box.add("b", "t", _payload("b"))
    now[0] += 30
    box.add("a", "t", _payload("a"))
    assert box.stats().oldest_age_s == pytest.approx(30)
    now[0] += 40  # the first two are now 70 s old
    assert box.prune() == 2
    assert [(m.camera, m.seq) for m in box.pending()] == [("a", 1)]
    assert box.stats().dropped == {"a": 1, "b": 1}
    assert {r["reason"] for r in box.dropped_ranges()} == {"max_age"}


def test_messages_survive_sigkill_of_the_writer(tmp_path):
    """Every add() that returned is on disk: kill the writer at a random moment, nothing acknowledged is lost."""
    db = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import sys
        from roadside.edge.outbox import Outbox
        box = Outbox({str(db)!r})
        while True:
            seq = box.add("cam", "t", lambda s: b'{{"seq": %d}}' % s)
            print(seq, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    reported = []
    for line in proc.stdout:
        reported.append(int(line))
        if len(reported) >= 200:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    box = Outbox(db)
    stored = [m.seq for m in box.pending(limit=100000)]
    # every seq the writer was told is stored, the stored ones are contiguous from 0, and numbering continues
    assert stored[: len(reported)] == reported == list(range(len(reported)))
    assert stored == list(range(len(stored)))
    assert box.add("cam", "t", lambda s: b"{}") == len(stored)


def test_unwritable_location_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OutboxError, match="cannot create the outbox folder"):
        Outbox(blocker / "sub" / "o.sqlite")
