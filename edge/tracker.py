"""ByteTrack multi-object tracker (Zhang et al., 2022), numpy + scipy only.

Why our own and not a library: the well-kept Python implementations (Roboflow ``trackers``, supervision's
``ByteTrack``) pull in matplotlib, pillow, PyAV and the GUI build of OpenCV, which conflicts with the
headless OpenCV an edge box uses. This module is the algorithm as published (Kalman filter on
(cx, cy, aspect, height), a first association of high-score detections, a second association of
low-score detections with the tracks left over, track confirmation, a lost-track buffer), plus two
things counting needs: a score-weighted class vote per track, and the time a track was confirmed.
``python -m roadside.calibration.baseline`` compares it with Roboflow's ByteTrack on the ground-truth clips.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from roadside.edge.config import TrackerConfig
from roadside.edge.detections import Detections, box_area, box_intersection, box_iou


class KalmanXYAH:
    """Constant-velocity Kalman filter on (cx, cy, w/h, h), the parameterisation ByteTrack/SORT use."""

    _std_pos = 1.0 / 20
    _std_vel = 1.0 / 160

    def __init__(self) -> None:
        self.F = np.eye(8)
        self.F[:4, 4:] = np.eye(4)
        self.H = np.eye(4, 8)

    def initiate(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = np.r_[z, np.zeros(4)]
        h = z[3]
        std = [2 * self._std_pos * h, 2 * self._std_pos * h, 1e-2, 2 * self._std_pos * h,
               10 * self._std_vel * h, 10 * self._std_vel * h, 1e-5, 10 * self._std_vel * h]
        return mean, np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised over tracks: mean (N, 8), cov (N, 8, 8)."""
        h = mean[:, 3]
        std = np.stack([self._std_pos * h, self._std_pos * h, np.full_like(h, 1e-2), self._std_pos * h,
                        self._std_vel * h, self._std_vel * h, np.full_like(h, 1e-5), self._std_vel * h], 1)
        Q = np.zeros((len(h), 8, 8))
        Q[:, np.arange(8), np.arange(8)] = np.square(std)
        mean = mean @ self.F.T
        cov = self.F @ cov @ self.F.T + Q
        return mean, cov

    def update(self, mean: np.ndarray, cov: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised over tracks: mean (N, 8), cov (N, 8, 8), measurements z (N, 4)."""
        h = mean[:, 3]
        r = np.stack([self._std_pos * h, self._std_pos * h, np.full_like(h, 1e-1), self._std_pos * h], 1)
        S = cov[:, :4, :4] + np.eye(4)[None] * np.square(r)[:, None, :]  # H P H^T + R
        PHt = cov[:, :, :4]  # P H^T
        K = np.linalg.solve(S, PHt.transpose(0, 2, 1)).transpose(0, 2, 1)  # (N, 8, 4)
        mean = mean + np.einsum("nij,nj->ni", K, z - mean[:, :4])
        cov = cov - K @ S @ K.transpose(0, 2, 1)
        return mean, cov


def xyxy_to_xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return np.stack([b[..., 0] + w / 2, b[..., 1] + h / 2, w / np.maximum(h, 1e-6), h], -1)


def xyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    h = m[..., 3]
    w = m[..., 2] * h
    return np.stack([m[..., 0] - w / 2, m[..., 1] - h / 2, m[..., 0] + w / 2, m[..., 1] + h / 2], -1)


#: the smallest position noise (source pixels) the motion gate assumes: box corners are no more exact than the
#: detector's input grid (a 640-px frame seen at 416 px: 1.5 px), whatever the Kalman filter's share of the height
GATE_FLOOR_PX = 2.0

NEW, TRACKED, LOST, REMOVED = "new", "tracked", "lost", "removed"


@dataclass
class Track:
    track_id: int
    mean: np.ndarray
    cov: np.ndarray
    score: float
    state: str = NEW
    hits: int = 1
    start_frame: int = 0
    last_frame: int = 0
    confirmed_frame: int | None = None
    class_votes: dict[str, float] = field(default_factory=dict)
    last_box: np.ndarray | None = None
    weak: bool = False  # born from a detection below new_track_threshold: confirmed by evidence (birth_evidence)
    evidence: float = 0.0  # sum of the matched detections' scores

    @property
    def confirmed(self) -> bool:
        return self.confirmed_frame is not None

    @property
    def category(self) -> str:
        return max(self.class_votes.items(), key=lambda kv: kv[1])[0]

    def vote(self, category: str, score: float) -> None:
        self.class_votes[category] = self.class_votes.get(category, 0.0) + float(score)


@dataclass(frozen=True)
class TrackerOutput:
    confirmed: Detections  # what the product reports and counts
    tentative: Detections  # tracks not yet confirmed (their path matters once they are)


def _assign(cost: np.ndarray, max_cost: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Minimum-cost matching keeping only pairs with cost <= max_cost."""
    if cost.size == 0:
        return [], list(range(cost.shape[0])), list(range(cost.shape[1]))
    c = np.where(cost > max_cost, max_cost + 1e5, cost)
    rows, cols = linear_sum_assignment(c)
    matches = [(r, k) for r, k in zip(rows, cols) if cost[r, k] <= max_cost]
    mr = {r for r, _ in matches}
    mc = {k for _, k in matches}
    return matches, [r for r in range(cost.shape[0]) if r not in mr], [k for k in range(cost.shape[1]) if k not in mc]


class ByteTracker:
    """Feed it one frame's detections at a time; it returns the confirmed, currently matched tracks."""

    def __init__(self, config: TrackerConfig | None = None, fps: float = 30.0):
        self.config = config or TrackerConfig()
        self.kf = KalmanXYAH()
        self.max_lost_frames = max(1, int(round(self.config.lost_buffer_s * fps)))
        self.tracks: list[Track] = []
        self.frame = -1
        self._last_detected = -1
        self._next_id = 1

    def _new_track(self, box: np.ndarray, score: float, category: str) -> Track:
        mean, cov = self.kf.initiate(xyxy_to_xyah(box))
        t = Track(self._next_id, mean, cov, score, start_frame=self.frame, last_frame=self.frame, last_box=box.copy(),
                  weak=score < self.config.new_track_threshold, evidence=float(score))
        self._next_id += 1
        t.vote(category, score)
        if self.config.min_hits <= 1 and not t.weak:
            t.state, t.confirmed_frame = TRACKED, self.frame
        return t

    def _update(self, t: Track, box: np.ndarray, score: float, category: str) -> None:
        """Book-keeping of a match; the Kalman correction is applied to all matches at once (_correct)."""
        self._matched.append((t, box))
        t.score = score
        t.hits += 1
        t.last_frame = self.frame
        t.last_box = box.copy()
        t.vote(category, score)
        t.evidence += float(score)
        if t.state == NEW and t.hits >= self.config.min_hits and (not t.weak or t.evidence >= self.config.birth_evidence):
            t.confirmed_frame = self.frame
        t.state = TRACKED if (t.state != NEW or t.confirmed) else NEW

    def update(self, dets: Detections) -> "TrackerOutput":
        """Associate one frame's detections with the tracks.

        Returns the matched detections of confirmed tracks and, separately, of tentative (not yet
        confirmed) tracks, each with ``tracker_id`` set and the track's voted category.
        """
        self.frame += 1
        # frames since the last detections: boxes of new tracks (no velocity yet) overlap less after a gap
        gap = max(1, self.frame - self._last_detected) if self._last_detected >= 0 else 1
        self._last_detected = self.frame
        cfg = self.config
        self._matched: list[tuple[Track, np.ndarray]] = []
        if self.tracks:
            means, covs = self.kf.predict(np.stack([t.mean for t in self.tracks]), np.stack([t.cov for t in self.tracks]))
            for t, m, c in zip(self.tracks, means, covs):
                if t.state != TRACKED and t.state != NEW:
                    m = m.copy()
                    m[7] = 0.0  # a lost track's height velocity is not trusted (as in ByteTrack)
                t.mean, t.cov = m, c
        conf = dets.confidence
        high = np.flatnonzero(conf >= cfg.high_threshold)
        low = np.flatnonzero((conf >= cfg.low_threshold) & (conf < cfg.high_threshold))
        out_ids = np.full(len(dets), -1, np.int64)

        active = [t for t in self.tracks if t.state in (TRACKED, LOST)]
        unconfirmed = [t for t in self.tracks if t.state == NEW]

        def associate(tracks: list[Track], idx: np.ndarray, min_iou: float) -> tuple[list[int], np.ndarray]:
            """Match ``tracks`` (predicted boxes) to detections ``idx``; returns the unmatched of both."""
            boxes = xyah_to_xyxy(np.stack([t.mean[:4] for t in tracks])) if tracks else np.zeros((0, 4))
            cost = 1 - box_iou(boxes, dets.xyxy[idx])
            matches, rest_t, rest_d = _assign(np.where(self._gated(tracks, dets.xyxy[idx]), np.inf, cost), 1 - min_iou)
            for ti, di in matches:
                d = idx[di]
                self._update(tracks[ti], dets.xyxy[d], conf[d], dets.category[d])
                out_ids[d] = tracks[ti].track_id
            return rest_t, idx[rest_d]

        # 1) confirmed + lost tracks with high-score detections; with lost_after_tracked, the tracks followed in the
        #    last detected frame first, then the lost ones with what is left that is not a second box of a vehicle
        #    just matched (a lost track re-appearing on a rider's or a cab's box of its neighbour)
        if cfg.lost_after_tracked:
            tracked, lost = [t for t in active if t.state == TRACKED], [t for t in active if t.state == LOST]
            rest_a, high_left = associate(tracked, high, cfg.match_iou)
            free = self._clear_of_tracks(dets.xyxy, high_left)
            rest_b, free_left = associate(lost, free, cfg.match_iou)
            high_left = np.sort(np.concatenate([np.setdiff1d(high_left, free), free_left])).astype(np.int64)
            active = tracked + lost
            rest_t = rest_a + [len(tracked) + i for i in rest_b]
        else:
            rest_t, high_left = associate(active, high, cfg.match_iou)
        # 2) tracks still unmatched (only those tracked in the last frame) with low-score detections
        remain = [active[i] for i in rest_t if active[i].state == TRACKED]
        rest_r, low_left = associate(remain, low, cfg.second_match_iou)
        for i in rest_r:
            remain[i].state = LOST
        # 3) unconfirmed tracks with the high-score detections left over; weak-born ones also with the weak
        #    detections (at or above birth_threshold) left over, since that is what they were born from
        rest_u, unclaimed = associate(unconfirmed, high_left, cfg.second_match_iou / gap)
        weak_left = low_left[conf[low_left] >= cfg.birth_threshold]
        weak_tracks = [unconfirmed[i] for i in rest_u if unconfirmed[i].weak]
        rest_w, weak_left = associate(weak_tracks, weak_left, cfg.second_match_iou / gap)
        lost_u = {id(unconfirmed[i]) for i in rest_u if not unconfirmed[i].weak} | {id(weak_tracks[i]) for i in rest_w}
        for t in unconfirmed:
            if id(t) in lost_u:
                t.state = REMOVED

        self._correct()

        # 4) new tracks from detections nobody claimed: confident ones on their own, weak ones on probation,
        #    unless they overlap a vehicle already tracked in this frame (a second box of that vehicle)
        weak_left = self._clear_of_tracks(dets.xyxy, weak_left)
        unclaimed = np.concatenate([unclaimed[conf[unclaimed] >= cfg.new_track_threshold],
                                    self._clear_of_tracks(dets.xyxy, unclaimed[conf[unclaimed] < cfg.new_track_threshold])])
        for d in np.sort(np.concatenate([unclaimed, weak_left])).astype(np.int64):
            if conf[d] >= min(cfg.new_track_threshold, cfg.birth_threshold):
                t = self._new_track(dets.xyxy[d], conf[d], dets.category[d])
                self.tracks.append(t)
                out_ids[d] = t.track_id

        # 5) forget tracks lost for too long
        for t in self.tracks:
            if t.state == LOST and self.frame - t.last_frame > self.max_lost_frames:
                t.state = REMOVED
        self.tracks = [t for t in self.tracks if t.state != REMOVED]

        live = {t.track_id: t for t in self.tracks if t.last_frame == self.frame}
        is_conf = np.array([i in live and live[i].confirmed for i in out_ids], dtype=bool)
        is_tent = np.array([i in live and not live[i].confirmed for i in out_ids], dtype=bool)

        def pick(mask: np.ndarray) -> Detections:
            idx = np.flatnonzero(mask) if len(mask) else np.zeros(0, np.int64)
            sel = dets[idx]
            # each track's voted category rather than this frame's guess
            cats = np.array([live[i].category for i in out_ids[idx]], dtype=object)
            return Detections(sel.xyxy, sel.confidence, sel.class_id, cats, out_ids[idx])

        return TrackerOutput(pick(is_conf), pick(is_tent))

    def _gated(self, tracks: list[Track], boxes: np.ndarray) -> np.ndarray:
        """(tracks, boxes) mask of associations the motion gate forbids: a confirmed track's detection whose centre
        is beyond ``motion_gate`` (squared Mahalanobis distance of the Kalman prediction's centre, as in DeepSORT's
        position-only gate); a match there would move the track onto a neighbour."""
        gate = self.config.motion_gate
        if gate <= 0 or not tracks or len(boxes) == 0:
            return np.zeros((len(tracks), len(boxes)), bool)
        confirmed = np.array([t.confirmed for t in tracks], bool)
        out = np.zeros((len(tracks), len(boxes)), bool)
        if not confirmed.any():
            return out
        sel = [t for t, c in zip(tracks, confirmed) if c]
        mean = np.array([t.mean[:4] for t in sel])
        cov = np.array([t.cov[:2, :2] for t in sel])
        r = np.square(np.maximum(KalmanXYAH._std_pos * mean[:, 3], GATE_FLOOR_PX))
        sxx, sxy, syy = cov[:, 0, 0] + r, cov[:, 0, 1], cov[:, 1, 1] + r  # the innovation covariance (2x2)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        dx, dy = cx[None] - mean[:, :1], cy[None] - mean[:, 1:2]
        d2 = (dx * dx * syy[:, None] - 2 * dx * dy * sxy[:, None] + dy * dy * sxx[:, None]) / (sxx * syy - sxy * sxy)[:, None]
        out[confirmed] = d2 > gate
        return out

    def _clear_of_tracks(self, boxes: np.ndarray, idx: np.ndarray, max_overlap: float = 0.5) -> np.ndarray:
        """The detections ``idx`` that lie less than ``max_overlap`` (share of their own area) inside any box
        matched to a track in this frame."""
        if len(idx) == 0 or not self._matched:
            return idx
        tracked = np.stack([b for _, b in self._matched])
        inside = box_intersection(boxes[idx], tracked) / np.maximum(box_area(boxes[idx])[:, None], 1e-9)
        return idx[inside.max(axis=1) < max_overlap]

    def predict(self) -> "TrackerOutput":
        """A frame without detections (the detector skipped it): every track moves on by its Kalman prediction;
        tracks followed in the last detected frame report their predicted boxes (confirmed and tentative),
        so counting sees them move. Nothing is confirmed, lost or removed here."""
        self.frame += 1
        if not self.tracks:
            return TrackerOutput(Detections.empty(), Detections.empty())
        means, covs = self.kf.predict(np.stack([t.mean for t in self.tracks]), np.stack([t.cov for t in self.tracks]))
        for t, m, c in zip(self.tracks, means, covs):
            t.mean, t.cov = m, c
        live = [t for t in self.tracks if t.state in (TRACKED, NEW) and t.last_frame >= self._last_detected]

        def out(ts: list[Track]) -> Detections:
            if not ts:
                return Detections.empty()
            return Detections(xyah_to_xyxy(np.stack([t.mean[:4] for t in ts])).astype(np.float32),
                              np.array([t.score for t in ts], np.float32), np.zeros(len(ts), np.int32),
                              np.array([t.category for t in ts], dtype=object), np.array([t.track_id for t in ts], np.int64))

        return TrackerOutput(out([t for t in live if t.confirmed]), out([t for t in live if not t.confirmed]))

    def _correct(self) -> None:
        if not self._matched:
            return
        tracks = [t for t, _ in self._matched]
        means, covs = self.kf.update(np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks]),
                                     xyxy_to_xyah(np.stack([b for _, b in self._matched])))
        for t, m, c in zip(tracks, means, covs):
            t.mean, t.cov = m, c

    def track(self, track_id: int) -> Track | None:
        for t in self.tracks:
            if t.track_id == track_id:
                return t
        return None
