"""Line counting (direction convention, segment only, once per track, jitter), zones, bins, tracker."""
from __future__ import annotations

import numpy as np
import pytest

from roadside.edge.config import CountingConfig, LineConfig, TrackerConfig, ZoneConfig
from roadside.edge.counting import IntervalBins, LineCounter, ZoneMonitor, side_value
from roadside.edge.detections import Detections
from roadside.edge.tracker import ByteTracker


def tracks(points: dict[int, tuple[float, float]], category: str = "car", size: float = 20.0) -> Detections:
    """Confirmed-track detections whose bottom-centre anchors are the given points."""
    ids = sorted(points)
    xyxy = np.array([[points[i][0] - size / 2, points[i][1] - size, points[i][0] + size / 2, points[i][1]] for i in ids],
                    np.float32).reshape(-1, 4)
    return Detections(xyxy, np.full(len(ids), 0.9, np.float32), np.zeros(len(ids), np.int32),
                      np.array([category] * len(ids), dtype=object), np.array(ids, np.int64))


def run_path(counter: LineCounter, path: list[tuple[float, float]], track_id: int = 1):
    events = []
    for f, p in enumerate(path):
        events += counter.update(f, tracks({track_id: p}))
    return events


HORIZONTAL = LineConfig(id="L", a=(100, 100), b=(300, 100))  # a left, b right


def test_direction_convention_matches_the_ground_truth_readme():
    """For a=(100,100) b=(300,100) (x right, y down), cross(b-a, p-a) > 0 below the line: moving down is forward."""
    a, b = np.array(HORIZONTAL.a), np.array(HORIZONTAL.b)
    assert side_value(a, b, np.array([200.0, 150.0])) > 0
    assert side_value(a, b, np.array([200.0, 50.0])) < 0
    down = [(200, y) for y in range(60, 141, 10)]
    ev = run_path(LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=0)), down)
    assert [(e.line, e.direction) for e in ev] == [("L", "forward")]
    ev = run_path(LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=0)), down[::-1])
    assert [e.direction for e in ev] == ["backward"]
    # the same motion against the reversed line a<->b flips the direction
    rev = LineConfig(id="R", a=(300, 100), b=(100, 100))
    ev = run_path(LineCounter([rev], CountingConfig(hysteresis_px=0)), down)
    assert [e.direction for e in ev] == ["backward"]


def test_ground_truth_line_direction_example():
    """freeway L1 a=(600,200) b=(95,200): traffic going up the image crosses forward (README table)."""
    line = LineConfig(id="L1", a=(600, 200), b=(95, 200))
    up = [(400, y) for y in range(260, 140, -8)]
    ev = run_path(LineCounter([line]), up)
    assert [e.direction for e in ev] == ["forward"]


def test_crossing_frame_and_position_are_interpolated():
    ev = run_path(LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=0)), [(150, 70), (150, 90), (150, 110), (150, 130)])
    assert len(ev) == 1
    e = ev[0]
    assert e.frame == 2 and e.detected_frame == 2  # reached y=100 between frames 1 and 2
    assert e.t_along_line == pytest.approx(0.25)


def test_passing_beside_the_segment_does_not_count():
    """Only the drawn segment counts, not its infinite extension."""
    beside = [(350, y) for y in range(60, 141, 10)]  # x=350 is right of b=(300,100)
    assert run_path(LineCounter([HORIZONTAL]), beside) == []
    diagonal_outside = [(310 + i, 60 + 10 * i) for i in range(9)]
    assert run_path(LineCounter([HORIZONTAL]), diagonal_outside) == []


def test_counted_once_per_track_and_jitter_does_not_add_counts():
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=3))
    path = [(200, 80), (200, 90), (200, 99), (200, 101), (200, 98), (200, 102), (200, 99), (200, 110),  # jitter on the line
            (200, 95), (200, 85), (200, 105), (200, 115), (200, 90), (200, 120)]  # crosses back and forth later
    ev = run_path(counter, path)
    assert [e.direction for e in ev] == ["forward"]
    assert counter.totals_dict()["L"] == {"forward": {"car": 1}, "backward": {}}


def test_jitter_inside_the_band_never_counts():
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=3))
    path = [(200, 99), (200, 101.5), (200, 98.5), (200, 102), (200, 97.5), (200, 101)] * 5
    assert run_path(counter, path) == []


def test_two_lines_and_many_tracks_in_one_frame():
    other = LineConfig(id="V", a=(200, 0), b=(200, 300))  # vertical: forward is towards -x (right of a->b walking down)
    counter = LineCounter([HORIZONTAL, other], CountingConfig(hysteresis_px=0))
    frames = [{1: (150, 80), 2: (250, 130), 3: (210, 150)}, {1: (150, 120), 2: (250, 70), 3: (190, 150)}]
    ev = []
    for f, pts in enumerate(frames):
        ev += counter.update(f, tracks(pts))
    got = sorted((e.line, e.direction, e.track_id) for e in ev)
    assert got == [("L", "backward", 2), ("L", "forward", 1), ("V", "forward", 3)]


def test_unconfirmed_tracks_never_count_but_their_path_counts_once_confirmed():
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=0))
    # frames 0-1: tentative track 7 crosses; frame 2: confirmed -> counted now, dated at the real crossing
    assert counter.update(0, Detections.empty(), tracks({7: (200, 90)})) == []
    assert counter.update(1, Detections.empty(), tracks({7: (200, 110)})) == []
    ev = counter.update(2, tracks({7: (200, 130)}), Detections.empty())
    assert [(e.track_id, e.frame, e.detected_frame) for e in ev] == [(7, 1, 2)]
    # a tentative track that is never confirmed never counts
    counter.update(3, Detections.empty(), tracks({8: (150, 90)}))
    counter.update(4, Detections.empty(), tracks({8: (150, 110)}))
    assert sum(counter.totals_dict()["L"]["forward"].values()) == 1


def test_zone_occupancy_and_dwell():
    zone = ZoneConfig(id="stop", polygon=[(0, 0), (100, 0), (100, 100), (0, 100)])
    zm = ZoneMonitor([zone], CountingConfig(), grace_s=0.2)
    ch = zm.update(0.0, tracks({1: (50, 50)}))
    assert ch["stop"].occupied and ch["stop"].count == 1
    assert zm.update(0.1, tracks({1: (50, 60), 2: (150, 50)})) == {}  # 2 is outside: nothing changes
    ch = zm.update(0.2, tracks({1: (50, 70), 2: (60, 50)}))
    assert ch["stop"].count == 2
    zm.update(0.3, tracks({2: (60, 50)}))  # 1 missing for one frame: still present (grace)
    assert zm.status["stop"].count == 2
    ch = zm.update(0.6, tracks({2: (60, 50)}))
    assert ch["stop"].count == 1 and zm.completed_dwells["stop"] == [pytest.approx(0.2)]
    assert zm.status["stop"].max_dwell_s == pytest.approx(0.4)
    ch = zm.update(1.0, Detections.empty())
    assert ch["stop"].occupied is False


def test_interval_bins_are_aligned_and_include_empty_bins():
    bins = IntervalBins([1.0, 5.0], ["L"])
    bins.start(0.0)
    bins.add(0.5, "L", "forward", "car")
    bins.add(2.2, "L", "forward", "bus")
    closed = bins.close_until(3.0)
    ones = [b for b in closed if b.interval_s == 1.0]
    assert [(b.start_s, b.end_s) for b in ones] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]
    assert ones[0].lines["L"].forward == {"car": 1}
    assert ones[1].lines["L"].forward == {}
    assert ones[2].lines["L"].forward == {"bus": 1}
    final = bins.close_until(3.5, final=True)
    assert [(b.interval_s, b.start_s, b.end_s, b.partial) for b in final] == [(1.0, 3.0, 3.5, True), (5.0, 0.0, 3.5, True)]
    assert final[1].lines["L"].forward == {"car": 1, "bus": 1}


# ---------------------------------------------------------------------------------------------
# Tracker


def det(boxes, scores, cats=None) -> Detections:
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Detections(boxes, np.asarray(scores, np.float32), np.zeros(len(boxes), np.int32),
                      np.array(cats or ["car"] * len(boxes), dtype=object))


def test_tracker_keeps_ids_confirms_after_min_hits_and_uses_low_scores():
    tr = ByteTracker(TrackerConfig(min_hits=3, high_threshold=0.5, low_threshold=0.1, new_track_threshold=0.6), fps=10)
    outs = []
    for f in range(12):
        x = 10 + 8 * f
        score_a = 0.9 if f not in (6, 7) else 0.2  # occluded: score dips below the high threshold
        outs.append(tr.update(det([[x, 50, x + 40, 80], [300 - 8 * f, 150, 340 - 8 * f, 180]], [score_a, 0.8])))
    assert len(outs[0].confirmed) == 0 and len(outs[1].confirmed) == 0  # not yet confirmed
    assert len(outs[0].tentative) == 2
    assert len(outs[2].confirmed) == 2
    ids = [tuple(sorted(o.confirmed.tracker_id)) for o in outs[2:]]
    assert len(set(ids)) == 1, f"track ids changed: {ids}"  # the low-score frames kept the same id


def test_tracker_reassociates_after_a_gap_within_the_lost_buffer():
    tr = ByteTracker(TrackerConfig(min_hits=2, lost_buffer_s=1.0), fps=10)
    first = None
    for f in range(20):
        x = 10 + 5 * f
        if 8 <= f < 13:  # missed for 5 frames (0.5 s)
            out = tr.update(Detections.empty())
            assert len(out.confirmed) == 0
            continue
        out = tr.update(det([[x, 50, x + 40, 80]], [0.9]))
        if f >= 2:
            first = first or int(out.confirmed.tracker_id[0])
            assert int(out.confirmed.tracker_id[0]) == first
    tr2 = ByteTracker(TrackerConfig(min_hits=2, lost_buffer_s=0.2), fps=10)
    ids = set()
    for f in range(20):
        x = 10 + 5 * f
        out = tr2.update(Detections.empty() if 8 <= f < 13 else det([[x, 50, x + 40, 80]], [0.9]))
        ids |= set(out.confirmed.tracker_id.tolist())
    assert len(ids) == 2  # gap longer than the buffer: a new track


def test_the_motion_gate_refuses_a_box_that_jumps_against_the_tracks_motion():
    """A car moving right at 8 px/frame; in frame 10 its own box is missing and the only box is the car behind it,
    20 px behind where the first is predicted (IoU 0.33 with the prediction: enough for the IoU pass). Without
    the gate the first car's track jumps onto it; with the gate (the default) the track is lost for that frame
    and the car behind gets a track of its own."""
    def run(gate: float) -> tuple[int, list[int]]:
        tr = ByteTracker(TrackerConfig(min_hits=2, motion_gate=gate), fps=10)
        first = None
        for f in range(10):
            x = 10 + 8 * f
            out = tr.update(det([[x, 50, x + 40, 80]], [0.9]))
            if f >= 1:
                first = int(out.confirmed.tracker_id[0])
        x = 10 + 8 * 10
        out = tr.update(det([[x - 20, 50, x + 20, 80]], [0.9]))
        return first, out.confirmed.tracker_id.tolist() + out.tentative.tracker_id.tolist()

    first, ids = run(0.0)
    assert ids == [first]  # IoU alone: the track took the neighbour's box
    first, ids = run(TrackerConfig().motion_gate)
    assert TrackerConfig().motion_gate > 0 and len(ids) == 1 and ids[0] != first


def test_tracker_class_is_a_score_weighted_vote():
    tr = ByteTracker(TrackerConfig(min_hits=1), fps=10)
    cats = ["truck", "car", "truck", "truck", "car"]
    for f, c in enumerate(cats):
        out = tr.update(det([[10 + 2 * f, 50, 50 + 2 * f, 80]], [0.9], [c]))
    assert list(out.confirmed.category) == ["truck"]


def test_lines_and_zones_reject_bad_geometry():
    from roadside.core.config import ConfigError, parse_config
    from roadside.edge.config import VisionConfig

    with pytest.raises(ConfigError, match=r"lines\[0\]: .*same point"):
        parse_config({"lines": [{"id": "x", "a": [5, 5], "b": [5, 5]}]}, VisionConfig)
    with pytest.raises(ConfigError, match=r"zones\[0\]: .*no area"):
        parse_config({"zones": [{"id": "z", "polygon": [[0, 0], [1, 1], [2, 2]]}]}, VisionConfig)


def test_jitter_of_a_standing_vehicle_does_not_use_up_its_count():
    """A vehicle queued at the line: its box bottom jitters across the line and back (less than the commit
    distance, 15% of its 40 px box = 6 px); later it really crosses: that crossing is the one counted."""
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=2, commit_fraction=0.15, commit_frames=5))
    standing = [(200, 97), (200, 103), (200, 97), (200, 104), (200, 96), (200, 103), (200, 97)] * 3
    crossing = [(200, 90), (200, 96), (200, 103), (200, 110), (200, 120), (200, 130)]
    ev = []
    for f, p in enumerate(standing + crossing):
        ev += counter.update(f, tracks({1: p}, size=40))
    assert [(e.direction, e.frame) for e in ev] == [("forward", len(standing) + 2)]
    assert ev[0].detected_frame == len(standing) + 3  # counted once 6 px past the line, dated at the crossing


def test_a_crossing_counts_after_enough_frames_on_the_new_side_even_if_slow():
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=1, commit_fraction=0.5, commit_frames=4))
    path = [(200, 96), (200, 98), (200, 102), (200, 102.5), (200, 103), (200, 103.5)]  # creeps over: never 10 px past
    ev = run_path(counter, path)
    assert [(e.direction, e.frame, e.detected_frame) for e in ev] == [("forward", 2, 5)]


def test_a_track_born_on_the_line_counts_in_the_direction_it_leaves():
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=3))
    ev = run_path(counter, [(200, 99), (200, 101), (200, 106), (200, 112)])
    assert [(e.direction, e.frame) for e in ev] == [("forward", 0)]
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=3))
    assert [e.direction for e in run_path(counter, [(150, 101), (150, 94), (150, 80)])] == ["backward"]


def test_weak_detections_start_tracks_only_on_evidence_over_several_frames():
    """Scores 0.25 (below new_track_threshold 0.4): with weak births on, a track starts and is confirmed once the
    scores add up to birth_evidence (five frames of 0.25 >= 1.2); off, no track ever starts."""
    def run(cfg: TrackerConfig, n: int = 8):
        t = ByteTracker(cfg, 30)
        out = []
        for f in range(n):
            box = np.array([[100 + 3 * f, 100, 140 + 3 * f, 130]], np.float32)
            out.append(t.update(Detections(box, np.array([0.25], np.float32), np.zeros(1, np.int32), np.array(["car"], object))))
        return out

    off = run(TrackerConfig(birth_threshold=1.0))
    assert all(len(o.confirmed) == 0 and len(o.tentative) == 0 for o in off)
    on = run(TrackerConfig(birth_threshold=0.2, birth_evidence=1.2, min_hits=3))
    assert [len(o.confirmed) for o in on] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert len({int(o.confirmed.tracker_id[0]) for o in on[4:]} | {int(o.tentative.tracker_id[0]) for o in on[:4]}) == 1


def test_between_detections_the_tracker_predicts_and_counting_follows():
    """Detections on even frames only: on odd frames the tracker reports each confirmed vehicle at its predicted
    box (constant velocity), so a crossing that happens on a skipped frame is dated there."""
    t = ByteTracker(TrackerConfig(), 30)
    counter = LineCounter([HORIZONTAL], CountingConfig(hysteresis_px=0))
    ys, events, anchors = [], [], {}
    for f in range(16):
        y = 43 + 6 * f  # bottom of the box, 6 px per frame; crosses y=100 between frames 9 and 10
        if f % 2 == 0:
            box = np.array([[190, y - 20, 210, y]], np.float32)
            out = t.update(Detections(box, np.array([0.9], np.float32), np.zeros(1, np.int32), np.array(["car"], object)))
        else:
            out = t.predict()
        if len(out.confirmed):
            anchors[f] = float(out.confirmed.anchors()[0, 1])
        events += counter.update(f, out.confirmed, out.tentative)
    odd = [f for f in anchors if f % 2 and f > 6]
    assert odd and all(abs(anchors[f] - (43 + 6 * f)) < 3 for f in odd), anchors  # predictions between the detections
    assert [(e.direction, e.frame) for e in events] == [("forward", 10)]


def test_coverage_after_a_layout_switch_starts_at_the_switch_not_at_an_earlier_captured_frame():
    """The first frame counted on a new layout may have been captured before the switch (it waited in the
    source while the layout changed): the new layout's first bin is still observed only from the switch on
    (so it is reported partial), and frames from then on extend that span as usual."""
    from roadside.edge.camera_worker import Coverage

    switch = 100.40
    cov = Coverage(gap_s=2.0, since=switch)
    for t in (100.25, 100.5, 100.75, 101.0):  # the first one captured 0.15 s before the switch
        cov.frame(t)
    assert cov.observed(100.0, 101.0) == pytest.approx(1.0 - 0.40)
    assert cov.observed(101.0, 102.0) == 0.0
    plain = Coverage(gap_s=2.0)  # no switch: a camera's frames cover from its first frame on
    for t in (100.25, 100.5, 101.0):
        plain.frame(t)
    assert plain.observed(100.0, 101.0) == pytest.approx(0.75)
