"""``roadside calibrate evaluate`` and ``diagnose`` on a real clip with the real default model: per clip, per line
and pooled count accuracy and event F1 (checked against the ground-truth README's own reference scoring), the
detections cache, the README table, extra truth folders, and the slit-scan images of ``replay --annotate``."""
from __future__ import annotations

import json
import re
import shutil

import cv2
import numpy as np
import pytest
from helpers.data import GT, MODELS, ROOT, VIDEOS

from roadside.core.errors import RoadsideError
from roadside.edge.counts_file import CountsFile

MODEL = MODELS / "picodet_s_416_coco.onnx"
CLIP_GT = "night_dhaka_flyover"  # 248 frames: the shortest clip with truth


def _reference_scores(gt: dict, counts: dict) -> tuple[float, float]:
    """Count accuracy and event F1 exactly as shared/data/gt/README.md's reference implementation computes them."""
    T, A = {}, {}
    for e in gt["events"]:
        k = (e["line"], e["direction"])
        (A if e["ambiguous"] else T)[k] = (A if e["ambiguous"] else T).get(k, 0) + 1
    pred = {(l, d): sum(c.values()) for l, dirs in counts["lines"].items() for d, c in dirs.items()}
    keys = {(ln["id"], d) for ln in gt["lines"] for d in ("forward", "backward")}
    err = sum(0 if T.get(k, 0) <= pred.get(k, 0) <= T.get(k, 0) + A.get(k, 0)
              else min(abs(pred.get(k, 0) - T.get(k, 0)), abs(pred.get(k, 0) - T.get(k, 0) - A.get(k, 0))) for k in keys)
    acc = 1 - err / sum(T.values())
    pairs = []
    for i, p in enumerate(counts["events"]):
        for j, g in enumerate(gt["events"]):
            if p["line"] == g["line"] and p["direction"] == g["direction"] and abs(p["frame"] - g["frame"]) <= gt["frame_tolerance_frames"] \
                    and abs(p["t_along_line"] - g["t_along_line"]) <= 0.1:
                pairs.append((abs(p["frame"] - g["frame"]), i, j))
    up, ug, m = set(), set(), []
    for _, i, j in sorted(pairs):
        if i not in up and j not in ug:
            up.add(i), ug.add(j), m.append((i, j))
    tp = sum(1 for _, j in m if not gt["events"][j]["ambiguous"])
    fp = len(counts["events"]) - len(m)
    fn = sum(1 for j, g in enumerate(gt["events"]) if j not in ug and not g["ambiguous"])
    prec, rec = (tp / (tp + fp) if tp + fp else 1.0), (tp / (tp + fn) if tp + fn else 1.0)
    return acc, (2 * prec * rec / (prec + rec) if prec + rec else 0.0)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    from roadside.calibration.evaluate import evaluate

    tmp = tmp_path_factory.mktemp("evaluate")
    gt_dir = tmp / "gt"
    gt_dir.mkdir()
    shutil.copy(GT / f"{CLIP_GT}.json", gt_dir)
    cache = tmp / "cache"
    first = evaluate([gt_dir], VIDEOS, [str(MODEL)], tmp / "out1", cache_dir=cache)
    second = evaluate([gt_dir], VIDEOS, [str(MODEL)], tmp / "out2", cache_dir=cache)
    return tmp, gt_dir, first, second


def test_evaluate_scores_agree_with_the_reference_and_the_cache_changes_nothing(evaluated):
    tmp, _, first, second = evaluated
    (r,) = first
    gt = json.loads((GT / f"{CLIP_GT}.json").read_text())
    counts = json.loads((tmp / "out1" / "picodet_s_416_coco" / CLIP_GT / "counts.json").read_text())
    acc, f1 = _reference_scores(gt, counts)
    assert r["accuracy"] == pytest.approx(acc) and r["f1"] == pytest.approx(f1)
    assert r["tp"] + r["fn"] == len([e for e in gt["events"] if not e["ambiguous"]])
    assert r["tp"] + r["fp"] == len(counts["events"])
    # per line: this clip has one line, so its line row is the clip
    (ln,) = r["lines"]
    assert ln["line"] == "L1" and ln["tp"] == r["tp"] and ln["fp"] == r["fp"] and ln["errors"] == r["errors"]
    assert ln["true"]["forward"] == 6
    assert r["detector_ms"] > 0 and r["cached"] is False
    # the second evaluation came from the detections cache and counted exactly the same
    (r2,) = second
    assert r2["cached"] is True and r2["detector_ms"] == pytest.approx(r["detector_ms"], abs=0.01)
    c2 = (tmp / "out2" / "picodet_s_416_coco" / CLIP_GT / "counts.json").read_text()
    assert c2 == (tmp / "out1" / "picodet_s_416_coco" / CLIP_GT / "counts.json").read_text()


def test_pooled_rows_and_the_readme_table(evaluated, tmp_path):
    from roadside.calibration.evaluate import README_BEGIN, README_END, format_lines, format_table, pooled, write_readme

    _, _, first, _ = evaluated
    two = first + [dict(first[0], gt="copy")]
    p = pooled(two)["picodet_s_416_coco"]
    assert p["true"] == 2 * first[0]["true"] and p["tp"] == 2 * first[0]["tp"]
    assert p["accuracy"] == pytest.approx(first[0]["accuracy"]) and p["f1"] == pytest.approx(first[0]["f1"])
    table = format_table(two)
    assert "**pooled** (2 clips)" in table and f"{first[0]['f1'] * 100:.1f}%" in table
    assert "| L1 |" in format_lines(first)
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{README_BEGIN}\nold table\n{README_END}\nafter\n")
    write_readme(readme, first)
    text = readme.read_text()
    assert "old table" not in text and format_table(first) in text and text.startswith("# x\nbefore\n") and text.endswith("after\n")
    readme.write_text("no markers")
    with pytest.raises(RoadsideError, match="no accuracy-table markers"):
        write_readme(readme, first)


def test_truth_dirs_find_their_clips_or_say_which_is_missing(tmp_path):
    from roadside.calibration.evaluate import find_truth

    found = find_truth([GT, ROOT / "tests" / "data" / "gt"], VIDEOS)
    names = {p.stem for p, _, _ in found}
    assert {"freeway_test", "night_dhaka_flyover", "dense_india_autos", "highway_cdnet"} <= names
    bad = tmp_path / "gt"
    bad.mkdir()
    (bad / "x.json").write_text(json.dumps({"clip": "nowhere.mp4", "lines": [], "events": []}))
    with pytest.raises(RoadsideError, match=r"x.json: its clip 'nowhere.mp4' is neither beside it nor in"):
        find_truth([bad], VIDEOS)
    (bad / "x.json").write_text(json.dumps({"lines": []}))
    with pytest.raises(RoadsideError, match=r"x.json: not a ground-truth file \(no 'clip', 'events'\)"):
        find_truth([bad], VIDEOS)


def test_diagnose_accounts_for_every_miss_and_false_count(evaluated):
    from roadside.calibration.diagnose import diagnose_clip, format_diagnosis
    from roadside.edge.config import VisionConfig

    tmp, gt_dir, first, _ = evaluated
    d = diagnose_clip(gt_dir / f"{CLIP_GT}.json", VIDEOS, VisionConfig(), str(MODEL), tmp / "cache")
    # the diagnosis replays the same pipeline: the same score, one verdict per miss, every false count listed
    assert d["accuracy"] == pytest.approx(first[0]["accuracy"]) and d["f1"] == pytest.approx(first[0]["f1"])
    assert sorted(m["id"] for m in d["misses"]) == sorted(first[0]["missed"])
    assert len(d["false_positives"]) == first[0]["fp"]
    stages = ("detector:", "suppression:", "tracker:", "counter:")
    assert all(m["verdict"].startswith(stages) for m in d["misses"])
    # "had already counted": whether that earlier count was a false one (its track switched vehicles, or jitter)
    # or another vehicle's true crossing (this one never had a track of its own) is told from the score
    false_counts = {(f["track_id"], f["frame"]) for f in d["false_positives"]}
    already = [m for m in d["misses"] if "had already counted" in m["verdict"]]
    assert already, "the night clip's bus (DN005) is counted early by a track that then has no count left"
    for m in already:
        tid, frame = (int(x) for x in re.search(r"#(\d+) had already counted this line at frame (\d+)", m["verdict"]).groups())
        assert ("identity switch?" in m["verdict"]) == ((tid, frame) in false_counts), m["verdict"]
    text = format_diagnosis(d)
    assert text.count("MISS") == len(d["misses"]) and text.count("FALSE") == first[0]["fp"]


def test_annotated_replay_writes_a_slit_scan_per_line_with_the_crossings_marked(evaluated, tmp_path):
    from roadside.calibration.evaluate import gt_config
    from roadside.edge.config import LineConfig, VisionConfig
    from roadside.edge.replay import run_replay

    gt = json.loads((GT / f"{CLIP_GT}.json").read_text())
    cfg = gt_config(gt, VisionConfig())
    cfg = cfg.model_copy(update={"lines": [*cfg.lines, LineConfig(id="V", a=(450, 300), b=(450, 500))]})
    counts = run_replay(VIDEOS / gt["clip"], cfg, tmp_path, model=MODEL, annotate=True, progress=False)
    assert counts.events, "the night clip has crossings to mark"
    cap = cv2.VideoCapture(str(VIDEOS / gt["clip"]))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    for ln in cfg.lines:
        img = cv2.imread(str(tmp_path / f"slitscan_{ln.id}.png"))
        assert img is not None, f"no slit-scan image for line {ln.id}"
        length = int(np.ceil(np.hypot(ln.b[0] - ln.a[0], ln.b[1] - ln.a[1])))
        assert img.shape[0] == counts.frames == len(frames) and img.shape[1] == 56 + length + 90
        # a row is the pixels under the line in that frame (a at the left), away from marks
        marked = {e.frame for e in counts.events if e.line == ln.id}
        k = next(f for f in range(100, len(frames)) if all(abs(f - m) > 10 for m in marked))
        xs = np.linspace(ln.a[0], ln.b[0], length).round().astype(int)
        ys = np.linspace(ln.a[1], ln.b[1], length).round().astype(int)
        truth_row = frames[k][ys, xs].astype(int)
        got = img[k, 56:56 + length].astype(int)
        assert np.median(np.abs(got - truth_row)) <= 12
        mine = [e for e in counts.events if e.line == ln.id]
        for e in mine:
            x = 56 + int(round(e.t_along_line * (length - 1)))
            if any(o is not e and abs(o.frame - e.frame) < 12 and abs(o.t_along_line - e.t_along_line) * length < 14 for o in mine):
                continue  # marks that overlap: the later one covers the earlier
            colour = (60, 220, 60) if e.direction == "forward" else (60, 60, 240)
            y = e.frame - 3 if e.direction == "forward" else e.frame + 3  # the triangle points along the direction
            if 0 <= y < img.shape[0]:
                assert tuple(int(v) for v in img[y, x]) == colour, f"no mark for the crossing at frame {e.frame}"
    assert CountsFile.read(tmp_path / "counts.json").frames == len(frames)
