"""Scoring against the shared ground truth, following its README's definitions."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from roadside.calibration.score import ScoreError, score

GT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "gt"


def load(name: str) -> dict:
    return json.loads((GT / f"{name}.json").read_text())


def counts(lines: dict, events: list | None = None) -> dict:
    return {"lines": lines, "events": events or []}


def test_readme_worked_example():
    """README: L1 forward 50, L2 forward 49, L2 backward 1 on the freeway clip -> errors 2+2+1 over 99 = 0.949."""
    g = load("freeway_test")
    c = counts({"L1": {"forward": {"car": 50}, "backward": {}},
                "L2": {"forward": {"car": 49}, "backward": {"car": 1}}})
    r = score(c, g)
    assert r["errors"] == 5 and r["true_total"] == 99
    assert r["accuracy"] == pytest.approx(1 - 5 / 99)
    assert round(r["accuracy"], 3) == 0.949


def test_ambiguous_event_is_dont_care():
    g = load("dual_carriageway_cars")  # 6 certain + 1 ambiguous on L1 forward
    for n, err in [(5, 1), (6, 0), (7, 0), (8, 1)]:
        r = score(counts({"L1": {"forward": {"car": n}, "backward": {}}}), g)
        assert r["errors"] == err, n


def test_per_class_rows_and_event_matching():
    g = load("dusk_wet_vid2")
    perfect_events = [{"line": e["line"], "direction": e["direction"], "frame": e["frame"] + 2, "class": e["class"],
                       "t_along_line": e["t_along_line"]} for e in g["events"]]
    lines: dict = {}
    for e in g["events"]:
        d = lines.setdefault(e["line"], {"forward": {}, "backward": {}})[e["direction"]]
        d[e["class"]] = d.get(e["class"], 0) + 1
    r = score(counts(lines, perfect_events), g)
    assert r["accuracy"] == 1.0 and r["class_accuracy"] == 1.0
    assert r["events"]["f1"] == 1.0
    # shifted beyond the tolerance: every event is both a miss and a false positive
    late = [dict(e, frame=e["frame"] + 10_000) for e in perfect_events]
    r = score(counts(lines, late), g)
    assert r["accuracy"] == 1.0 and r["events"]["tp"] == 0 and r["events"]["fn"] == 27


def test_counts_from_other_lines_are_refused():
    g = load("freeway_test")
    with pytest.raises(ScoreError, match="no line 'L2'"):
        score(counts({"L1": {"forward": {}, "backward": {}}}), g)
    c = counts({"L1": {"forward": {}, "backward": {}}, "L2": {"forward": {}, "backward": {}}})
    c["config"] = {"lines": [{"id": "L1", "a": [95.0, 200.0], "b": [600.0, 200.0]}]}
    with pytest.raises(ScoreError, match="forward would not mean the same"):
        score(c, g)


def test_a_bad_counts_file_is_named_with_the_key_path(tmp_path):
    from roadside.calibration.score import score_files
    from roadside.edge.counts_file import CountsFileError

    gt_path = GT / "freeway_test.json"
    bad = tmp_path / "counts.json"
    bad.write_text(json.dumps({"lines": {"L1": {"forward": {"car": 2}, "backward": {}}},
                               "events": [{"line": "L1", "direction": "up", "frame": 3, "class": "car"}]}))
    with pytest.raises(CountsFileError) as e:
        score_files(bad, gt_path)
    assert str(e.value).startswith(f"{bad}: not a counts file") and "events[0].direction" in str(e.value)
    bad.write_text('{"lines": {')
    with pytest.raises(CountsFileError, match="cannot read the counts as JSON"):
        score_files(bad, gt_path)
    # the ground truth given in place of the counts
    with pytest.raises(CountsFileError, match="lines: Input should be"):
        score_files(gt_path, gt_path)


def test_a_counts_file_in_todays_format_scores(tmp_path):
    """A counts.json as replay writes it (every field, events with all their keys) reads and scores."""
    from roadside.calibration.score import score_files

    g = load("freeway_test")
    lines: dict = {"L1": {"forward": {}, "backward": {}}, "L2": {"forward": {}, "backward": {}}}
    events = []
    for e in g["events"]:
        d = lines[e["line"]][e["direction"]]
        d[e["class"]] = d.get(e["class"], 0) + 1
        events.append({"line": e["line"], "direction": e["direction"], "frame": e["frame"], "time_s": round(e["frame"] / 29.97, 3),
                       "class": e["class"], "track_id": len(events) + 1, "t_along_line": e["t_along_line"],
                       "detected_frame": e["frame"] + 2})
    data = {"video": "freeway_overpass.mp4", "frames": 984, "fps": 29.97, "width": 640, "height": 360, "duration_s": 32.833,
            "model": "m", "model_family": "picodet", "config_hash": "0123456789abcdef", "complete": True, "error": None,
            "lines": lines, "events": events,
            "bins": [{"interval_s": 60.0, "start_s": 0.0, "end_s": 32.833, "partial": True, "lines": lines}],
            "zones": {"z": {"changes": [{"zone": "z", "frame": 5, "time_s": 0.167, "occupied": True, "count": 1}],
                            "completed_dwell_s": [1.5]}},
            "config": {"lines": [{"id": ln["id"], "a": ln["a"], "b": ln["b"]} for ln in g["lines"]]}}
    path = tmp_path / "counts.json"
    path.write_text(json.dumps(data))
    r = score_files(path, GT / "freeway_test.json")
    assert r["accuracy"] == 1.0 and r["events"]["f1"] == 1.0
