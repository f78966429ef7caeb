"""Validated configuration of the signal controller (``CTRL.yaml``).

The intersection is described as *phases* (signal groups: the movements or one pedestrian crossing that
show one signal), which pairs of phases are *compatible* (may show green together), and a *sequence* of
*stages* (sets of compatible phases that are green together; the ring). Each phase has its own timings;
change and clearance intervals may be given directly or computed by the ITE formulas (see clearance.py).
What follows from these (timings, conflicts, stage limits, change times) is worked out once, by
:class:`~roadside.controller.intersection.Intersection`.

Every model forbids unknown keys; load a file with :func:`load_controller_config`.
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from roadside.controller.policy_names import POLICY_NAMES
from roadside.core.config import Identifier, Strict, load_config, parse_config
from roadside.core.mqtt import MqttConfig
from roadside.core.topics import Topics

Seconds = float
#: The policies that run ring-and-barrier (dual_ring) operation.
RING_POLICIES = ("fixed", "actuated")


class ClearanceInputs(Strict):
    """Approach geometry from which yellow and red clearance are computed (ITE)."""

    approach_speed_kmh: float = Field(gt=0, le=150)
    grade_percent: float = Field(0.0, ge=-15, le=15)
    #: Stop line to the far side of the last conflicting lane (m).
    width_m: float = Field(gt=0, le=200)
    vehicle_length_m: float = Field(6.1, gt=0, le=30)


class ZoneRef(Strict):
    """A presence zone of an edge camera (PresenceMessage.zones key)."""

    device: Identifier | None = None  # None: the configuration's edge.device
    camera: Identifier
    zone: Identifier
    #: The part of the zone's vehicles that belong to this phase, for a lane shared by several phases
    #: (e.g. 0.5 for a through-and-left lane feeding a through and a left phase): queues count
    #: ``share x vehicles``; an occupied zone still calls every phase it feeds.
    share: float = Field(1.0, gt=0, le=1)


class LineRef(Strict):
    """A count line of an edge camera (CountsMessage.lines key) and the direction(s) that count."""

    device: Identifier | None = None
    camera: Identifier
    line: Identifier
    direction: Literal["forward", "backward", "both"] = "forward"
    #: The part of the line's vehicles that belong to this phase (a lane shared by several phases).
    share: float = Field(1.0, gt=0, le=1)


class PhaseDetectors(Strict):
    #: Zones whose occupancy places a call and extends the green (actuated gaps): near the stop line.
    presence: list[ZoneRef] = Field(default_factory=list)
    #: Zones whose vehicle count and dwell estimate the queue (adaptive policy); often the whole approach.
    queue: list[ZoneRef] = Field(default_factory=list)
    #: Count lines whose counts measure the phase's flow (Webster, adaptive arrival rates).
    counts: list[LineRef] = Field(default_factory=list)
    #: Time (s) a free-flowing vehicle needs from entering the queue zones to the stop line (zone length
    #: over approach speed). A zone whose oldest vehicle dwelt longer holds a queue.
    queue_travel_s: float = Field(7.0, gt=0, le=120)

    def refs(self) -> list[ZoneRef | LineRef]:
        return [*self.presence, *self.queue, *self.counts]


class PhaseConfig(Strict):
    id: Identifier
    kind: Literal["vehicle", "pedestrian"] = "vehicle"
    #: What the phase serves: movement labels (e.g. ``N_through``) or lane ids; documentation and audit.
    movements: list[str] = Field(default_factory=list)
    #: Vehicle phases: green limits (s). Pedestrian phases: set ``walk`` instead.
    min_green: Seconds | None = Field(None, ge=1, le=120)
    max_green: Seconds | None = Field(None, ge=1, le=300)
    #: Passage (gap, vehicle extension) time of actuated control (s).
    passage: Seconds = Field(2.0, ge=0.1, le=10)
    #: Change intervals (s): give both, or ``clearance`` to compute them by the ITE formulas.
    yellow: Seconds | None = Field(None, ge=0, le=10)
    red_clearance: Seconds | None = Field(None, ge=0, le=10)
    clearance: ClearanceInputs | None = None
    #: Pedestrian phases: WALK time and pedestrian clearance (flashing DON'T WALK); the clearance may be
    #: computed from ``crossing_length_m`` at 1.07 m/s.
    walk: Seconds | None = Field(None, ge=1, le=60)
    ped_clearance: Seconds | None = Field(None, ge=0, le=90)
    crossing_length_m: float | None = Field(None, gt=0, le=100)
    #: Lanes and saturation flow per lane (veh/h of green), for Webster and the adaptive queue model.
    lanes: int = Field(1, ge=1, le=8)
    saturation_flow_vph: float = Field(1800.0, gt=0, le=3000)
    #: ``min``/``max``: the phase is called every cycle whatever the detectors say (for pedestrians: WALK
    #: every time its stage is served).
    recall: Literal["none", "min", "max"] = "none"
    detectors: PhaseDetectors = Field(default_factory=PhaseDetectors)

    @model_validator(mode="after")
    def _complete(self) -> "PhaseConfig":
        where = f"phase {self.id!r}"
        if self.kind == "pedestrian":
            if self.walk is None:
                raise ValueError(f"{where}: a pedestrian phase needs 'walk' (s)")
            if self.ped_clearance is None and self.crossing_length_m is None:
                raise ValueError(f"{where}: give 'ped_clearance' (s) or 'crossing_length_m'")
            if self.min_green is not None or self.max_green is not None or self.clearance is not None:
                raise ValueError(f"{where}: a pedestrian phase is timed by walk and ped_clearance, "
                                 "not min_green/max_green/clearance")
        else:
            if self.min_green is None or self.max_green is None:
                raise ValueError(f"{where}: a vehicle phase needs min_green and max_green (s)")
            if self.max_green < self.min_green + 1:
                raise ValueError(f"{where}: max_green ({self.max_green}) must exceed min_green ({self.min_green}) "
                                 "by at least 1 s")
            if self.walk is not None or self.ped_clearance is not None:
                raise ValueError(f"{where}: walk/ped_clearance belong to pedestrian phases")
            given = (self.yellow is not None, self.red_clearance is not None)
            if self.clearance is None and given != (True, True):
                raise ValueError(f"{where}: give 'yellow' and 'red_clearance' (s), or 'clearance' to compute them")
            if self.clearance is not None and any(given):
                raise ValueError(f"{where}: give either yellow/red_clearance or clearance, not both")
            if self.yellow is not None and self.yellow < 3:
                raise ValueError(f"{where}: yellow {self.yellow} s is shorter than 3 s")
        return self


class StageConfig(Strict):
    id: Identifier
    #: Phases green together in this stage (they must be pairwise compatible).
    phases: list[Identifier] = Field(min_length=1)
    #: Phases of this stage that are green only permissively here (they yield, like a left turn across
    #: oncoming traffic; SUMO's ``g``). A stage that serves such a phase protected is called by it even
    #: while it is already green permissively.
    permissive: list[Identifier] = Field(default_factory=list)


class DualRingConfig(Strict):
    """Ring-and-barrier (NEMA dual ring) operation (see rings.py): the stages follow from the rings, so
    ``intersection.stages`` is left out."""

    #: The two rings, each its vehicle phases in their order of service (NEMA 1-4 and 5-8).
    rings: list[list[Identifier]] = Field(min_length=2, max_length=2)
    #: The barrier groups in order, each the phases of both rings served between two barriers (NEMA: 1, 2, 5,
    #: 6 and 3, 4, 7, 8). Each group takes the next phases of each ring, in ring order.
    barriers: list[list[Identifier]] = Field(min_length=2)
    #: Pedestrian phase -> the vehicle phase it runs beside (its WALK is timed within that phase's green).
    walk_with: dict[Identifier, Identifier] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _aligned(self) -> "DualRingConfig":
        seen: dict[str, str] = {}
        for r, ring in enumerate(self.rings):
            if not ring:
                raise ValueError(f"rings[{r}]: a ring needs at least one phase")
            for i, pid in enumerate(ring):
                if pid in seen:
                    raise ValueError(f"rings[{r}][{i}]: phase {pid!r} is already in {seen[pid]}")
                seen[pid] = f"rings[{r}]"
        group_of: dict[str, int] = {}
        for g, members in enumerate(self.barriers):
            for i, pid in enumerate(members):
                if pid not in seen:
                    raise ValueError(f"barriers[{g}][{i}]: phase {pid!r} is in no ring")
                if pid in group_of:
                    raise ValueError(f"barriers[{g}][{i}]: phase {pid!r} is already in barriers[{group_of[pid]}]")
                group_of[pid] = g
            if not members:
                raise ValueError(f"barriers[{g}]: a barrier group needs at least one phase")
        for r, ring in enumerate(self.rings):
            last = 0
            for i, pid in enumerate(ring):
                if pid not in group_of:
                    raise ValueError(f"rings[{r}][{i}]: phase {pid!r} is in no barrier group")
                g = group_of[pid]
                if g < last:
                    raise ValueError(f"rings[{r}][{i}]: phase {pid!r} (barriers[{g}]) comes after a phase of "
                                     f"barriers[{last}]: the barrier groups do not align with the ring order")
                last = g
        return self


class IntersectionConfig(Strict):
    phases: list[PhaseConfig] = Field(min_length=2)
    #: Groups of phases that may be green at the same time; every pair inside a group is compatible.
    #: Phases not paired here conflict.
    compatible: list[list[Identifier]] = Field(default_factory=list)
    #: The ring: stages in their normal order. Policies that skip or reorder stages still only ever
    #: show one of these stages. Left out with ``dual_ring``, which derives them.
    stages: list[StageConfig] = Field(default_factory=list)
    #: Ring-and-barrier operation instead of one ring of stages.
    dual_ring: DualRingConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "IntersectionConfig":
        ids = [p.id for p in self.phases]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"phase id(s) {sorted(dup)} used more than once")
        known = set(ids)
        for gi, group in enumerate(self.compatible):
            for pid in group:
                if pid not in known:
                    raise ValueError(f"compatible[{gi}]: unknown phase {pid!r}")
        if self.dual_ring is not None:
            self._check_dual_ring(self.dual_ring)
        elif len(self.stages) < 2:
            raise ValueError("stages: give at least two stages (or dual_ring)")
        sids = [s.id for s in self.stages]
        if len(set(sids)) != len(sids):
            raise ValueError("stage ids must be unique")
        pairs = self.compatible_pairs
        used: set[str] = set()
        for s in self.stage_list:
            for pid in s.phases:
                if pid not in known:
                    raise ValueError(f"stage {s.id!r}: unknown phase {pid!r}")
            if len(set(s.phases)) != len(s.phases):
                raise ValueError(f"stage {s.id!r}: a phase is listed twice")
            for pid in s.permissive:
                if pid not in s.phases:
                    raise ValueError(f"stage {s.id!r}: permissive phase {pid!r} is not one of the stage's phases")
            for i, a in enumerate(s.phases):
                for b in s.phases[i + 1:]:
                    if frozenset((a, b)) not in pairs:
                        raise ValueError(f"stage {s.id!r}: phases {a!r} and {b!r} conflict (not listed as compatible)")
            used.update(s.phases)
        unused = known - used
        if unused:
            raise ValueError(f"phase(s) {sorted(unused)} are in no stage and would never be served")
        return self

    def _check_dual_ring(self, dr: DualRingConfig) -> None:
        if self.stages:
            raise ValueError("stages: leave them out with dual_ring, which derives them from the rings")
        kind = {p.id: p.kind for p in self.phases}
        for r, ring in enumerate(dr.rings):
            for i, pid in enumerate(ring):
                if pid not in kind:
                    raise ValueError(f"dual_ring.rings[{r}][{i}]: unknown phase {pid!r}")
                if kind[pid] != "vehicle":
                    raise ValueError(f"dual_ring.rings[{r}][{i}]: {pid!r} is a pedestrian phase; put it in "
                                     "dual_ring.walk_with beside its vehicle phase")
        in_rings = {p for ring in dr.rings for p in ring}
        for ped, veh in dr.walk_with.items():
            if kind.get(ped) != "pedestrian":
                raise ValueError(f"dual_ring.walk_with.{ped}: not a pedestrian phase")
            if veh not in in_rings:
                raise ValueError(f"dual_ring.walk_with.{ped}: {veh!r} is not a phase of the rings")
        missing = [p for p, k in kind.items() if p not in in_rings and p not in dr.walk_with]
        if missing:
            raise ValueError(f"dual_ring: phase(s) {missing} are in no ring (pedestrians: in walk_with) and "
                             "would never be served")
        pairs = self.compatible_pairs
        for ped, veh in dr.walk_with.items():
            g = next(g for g, members in enumerate(dr.barriers) if veh in members)
            ring = next(r for r, phases in enumerate(dr.rings) if veh in phases)
            for other in dr.rings[1 - ring]:
                if other in dr.barriers[g] and frozenset((ped, other)) not in pairs:
                    raise ValueError(f"dual_ring.walk_with.{ped}: runs beside {veh!r}, so with {other!r} (ring "
                                     f"{2 - ring}, barriers[{g}]), but conflicts with it (not listed as compatible)")
            if frozenset((ped, veh)) not in pairs:
                raise ValueError(f"dual_ring.walk_with.{ped}: conflicts with {veh!r} (not listed as compatible)")
        for g, members in enumerate(dr.barriers):
            inside = set(members)
            r1 = [p for p in dr.rings[0] if p in inside]
            r2 = [p for p in dr.rings[1] if p in inside]
            for a in r1:
                for b in r2:
                    if frozenset((a, b)) not in pairs:
                        raise ValueError(f"dual_ring.barriers[{g}]: {a!r} (ring 1) and {b!r} (ring 2) would be "
                                         "green together but conflict (not listed as compatible)")

    @cached_property
    def stage_list(self) -> list[StageConfig]:
        """The stages: as written, or every combination the rings and barriers allow (rings.py)."""
        if self.dual_ring is None:
            return list(self.stages)
        from roadside.controller.rings import ring_barrier

        return [StageConfig(id=s.id, phases=s.phases) for s in ring_barrier(self.dual_ring).stages()]

    @cached_property
    def compatible_pairs(self) -> frozenset[frozenset[str]]:
        out: set[frozenset[str]] = set()
        for group in self.compatible:
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    if a != b:
                        out.add(frozenset((a, b)))
        return frozenset(out)


class FixedPlanConfig(Strict):
    #: Green time per stage (s); the cycle is the sum of greens and the change intervals between stages.
    greens: dict[Identifier, Annotated[float, Field(ge=1, le=300)]] = Field(default_factory=dict)


class WebsterConfig(Strict):
    #: Flows are smoothed exponentially with this time constant (s) before each recomputation.
    flow_smoothing_s: float = Field(600.0, ge=0, le=7200)
    #: Largest change of any stage's green from one cycle to the next (s).
    max_green_change_s: float = Field(4.0, gt=0, le=60)
    min_cycle_s: float = Field(40.0, ge=10, le=300)
    max_cycle_s: float = Field(120.0, ge=10, le=300)
    #: Start-up lost time per stage (s), added to the change intervals to get the lost time L.
    startup_lost_s: float = Field(2.0, ge=0, le=10)
    #: Flow ratio sum Y is capped here so that the formula stays finite on oversaturated approaches.
    max_flow_ratio: float = Field(0.9, gt=0.1, lt=1.0)

    @model_validator(mode="after")
    def _cycle(self) -> "WebsterConfig":
        if self.max_cycle_s < self.min_cycle_s:
            raise ValueError("max_cycle_s is less than min_cycle_s")
        return self


class AdaptiveConfig(Strict):
    """The queue-estimating look-ahead policy (see policies/adaptive.py)."""

    #: Decision step of the look-ahead: extend the green by this much, or end it now (s).
    step_s: float = Field(1.0, gt=0, le=10)
    #: ``delay`` (default): the marginal-delay rule (delay saved by holding against the delay caused
    #: elsewhere); ``rate`` (experimental, worse so far): keep the green while the ending phases discharge
    #: faster than the next stage would, its switch's lost time included.
    model: Literal["rate", "delay"] = "delay"
    #: ``delay`` model only: cap the time until the current stage returns by the greens the other stages
    #: have really had lately. Off by default: it feeds on the policy's own decisions (a short green makes
    #: the next one shorter), which collapses the greens to their minimum under saturation.
    return_from_history: bool = False
    #: Wait of a phase, for the weights and ``max_wait_s``: ``service``, the time since the phase was last
    #: green; ``zone``, the longest dwell in its zones (large for every approach of a standing queue).
    wait_from: Literal["service", "zone"] = "service"
    #: Weight of free-flowing vehicles (no standing queue) in the value of keeping the green: 1 counts
    #: them fully, 0 serves standing queues exhaustively and then changes for anyone waiting.
    free_flow_weight: float = Field(0.45, ge=0, le=1)
    #: A lane whose stop-bar vehicle has not moved this long into the green (after start-up) is blocked (s).
    blocked_after_s: float = Field(10.0, ge=1, le=120)
    #: A protected green's lane that also feeds a red phase is held by its stop-bar vehicle (it waits for that
    #: phase's stage) once the same vehicle has been the zone's oldest for start-up plus this long (s): a
    #: vehicle free to go leaves the zone well within it, and with the green protected it yields to nobody.
    held_head_s: float = Field(2.0, ge=0, le=120)
    #: Weight of the delay saved by keeping the green against the delay it causes elsewhere.
    hold_bias: float = Field(1.0, gt=0, le=10)
    #: Start-up lost time of a stage (s) in the queue model.
    startup_lost_s: float = Field(2.0, ge=0, le=10)
    #: Weight of the longest wait (s) in choosing the next stage (anti-starvation).
    wait_weight: float = Field(0.01, ge=0, le=10)
    #: A stage whose oldest call has waited this long is served next whatever the queues say (s).
    max_wait_s: float = Field(120.0, ge=10, le=600)
    #: A green that ends with at least ``cycle_failure_veh`` vehicles in lanes holding a standing queue (a
    #: cycle failure) shows that the phase's demand is at least what the green could serve, whatever its counted
    #: flow (which is what its greens let through): its flow ratio is taken as at least g / C (that green over
    #: the time since the phase's previous green ended) in the Webster green that bounds the hold rule's
    #: deferred share, until one of its greens ends without a failure. Off: the measured flows alone.
    cycle_failure_bound: bool = True
    #: Vehicles standing at the end of a green that make it a cycle failure (more than a turner or two).
    cycle_failure_veh: float = Field(3.0, ge=1, le=100)
    #: A queue zone holds a standing queue when its oldest vehicle dwelt this much longer than free travel (s).
    queued_margin_s: float = Field(2.0, ge=0, le=60)
    #: Vehicles to assume per lane on a phase whose queue zone is missing or unreliable.
    default_queue_per_lane: float = Field(3.0, ge=0, le=50)


class TimingConfig(Strict):
    policy: Literal[POLICY_NAMES] = "actuated"  # type: ignore[valid-type]
    fixed: FixedPlanConfig = Field(default_factory=FixedPlanConfig)
    webster: WebsterConfig = Field(default_factory=WebsterConfig)
    adaptive: AdaptiveConfig = Field(default_factory=AdaptiveConfig)


class FailsafeConfig(Strict):
    #: A camera with no message (counts, presence or health) for this long is stale (s); keep it well above
    #: the edge's health_interval_s (10 s by default), the one message a quiet camera still sends.
    stale_after_s: float = Field(25.0, gt=0, le=3600)
    #: ``recall``: the affected phases are called every cycle and get their fixed-plan green;
    #: ``fixed``: the whole controller runs the fixed-time plan while any phase is affected.
    action: Literal["recall", "fixed"] = "recall"
    #: Good data must flow this long before a phase leaves fail-safe (s).
    recover_after_s: float = Field(5.0, ge=0, le=600)
    #: A malformed payload from a camera puts its phases in fail-safe for this long (s).
    malformed_hold_s: float = Field(30.0, ge=0, le=3600)


class InputsConfig(Strict):
    """How the controller reads the edge's counts (the ``detection`` section of the file)."""

    #: The counts bin length (s) the controller uses; other bins of the same counts are ignored so
    #: that vehicles are not counted twice.
    counts_interval_s: float = Field(60.0, gt=0, le=3600)
    #: Flow rates are measured over this window (s).
    flow_window_s: float = Field(300.0, gt=0, le=7200)


class ActuatorConfig(Strict):
    #: ``mqtt``: publish every signal change to ``<prefix>/controller/command`` for a cabinet
    #: adapter; ``none``: decide and publish plan/state/events only (shadow mode).
    kind: Literal["mqtt", "none"] = "mqtt"


class ControllerConfig(Strict):
    site: Identifier
    #: The edge device whose topics are read when a detector reference does not name one.
    device: Identifier = "edge"
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    intersection: IntersectionConfig
    timing: TimingConfig = Field(default_factory=TimingConfig)
    failsafe: FailsafeConfig = Field(default_factory=FailsafeConfig)
    detection: InputsConfig = Field(default_factory=InputsConfig)
    actuator: ActuatorConfig = Field(default_factory=ActuatorConfig)
    #: Decision period (s). Signal changes happen on these ticks; max green holds exactly when ticks
    #: are never further apart than this.
    tick_s: float = Field(0.5, gt=0, le=1)
    #: Also append every audit event as one JSON line to this file.
    audit_log: str | None = None

    @model_validator(mode="after")
    def _plan_covers_stages(self) -> "ControllerConfig":
        inter = self.intersection
        if inter.dual_ring is not None:
            # ring-and-barrier: the fixed plan is a green per ring phase, run ring by ring
            ring_phases = {p for ring in inter.dual_ring.rings for p in ring}
            for pid in self.timing.fixed.greens:
                if pid not in ring_phases:
                    raise ValueError(f"timing.fixed.greens: {pid!r} is not a phase of the rings (with dual_ring the "
                                     "fixed plan gives a green per ring phase)")
            if self.timing.policy not in RING_POLICIES:
                raise ValueError(f"timing.policy: {self.timing.policy!r} does not run ring-and-barrier (dual_ring) "
                                 f"operation; use one of {', '.join(RING_POLICIES)}")
            return self
        stage_ids = {s.id for s in inter.stages}
        for sid in self.timing.fixed.greens:
            if sid not in stage_ids:
                raise ValueError(f"timing.fixed.greens: unknown stage {sid!r}")
        return self

    @property
    def topics(self) -> Topics:
        return Topics.for_site(self.site, self.mqtt.prefix)

    def device_of(self, ref: ZoneRef | LineRef) -> str:
        return ref.device or self.device


def parse_controller_config(data: object, source: str = "controller configuration") -> ControllerConfig:
    return parse_config(data, ControllerConfig, source)


def load_controller_config(path: str | Path) -> ControllerConfig:
    """Load a controller configuration; relative TLS file paths are relative to the file's folder."""
    cfg = load_config(path, ControllerConfig)
    return cfg.model_copy(update={"mqtt": cfg.mqtt.relative_to(Path(path).parent)})
