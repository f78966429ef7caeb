"""A simulated edge device for the fleet's tests and load test: the product's own durable outbox and MQTT
link (:class:`~roadside.edge.outbox.Outbox`, :class:`~roadside.edge.mqtt_link.MqttLink`, hence the one
broker client), fed with synthetic count bins instead of a camera. Everything from the outbox onwards is
the edge service's real delivery path: seq allocation, PUBACK-gated removal, replay with ``late`` after a
reconnection, the Last Will on the status topic.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timezone
from pathlib import Path

from roadside.core.mqtt import MqttConfig
from roadside.core.payloads import CountsMessage, DirectionCounts
from roadside.core.topics import Topics
from roadside.edge.mqtt_link import MqttLink
from roadside.edge.outbox import Outbox

CLASSES = ("car", "truck", "bus", "motorcycle", "bicycle")


class SimDevice:
    def __init__(self, mqtt: MqttConfig, site: str, device: str, workdir: str | Path, *, cameras: tuple[str, ...] = ("cam1",),
                 lines: tuple[str, ...] = ("L1", "L2"), seed: int = 0, prefix: str | None = None) -> None:
        self.site, self.device, self.cameras, self.lines = site, device, cameras, lines
        self.topics = Topics.for_site(site, prefix)
        self.outbox = Outbox(Path(workdir) / f"{device}.sqlite")
        self.link = MqttLink(mqtt, f"roadside-{site}-{device}", self.topics, device, self.outbox, seed=seed)
        self.rng = random.Random(seed)
        #: (camera, seq) -> (interval_start epoch, interval_s, vehicles per line/direction/class, epoch when it was
        #: in the outbox) of every bin produced
        self.produced: dict[tuple[str, int], tuple[float, float, dict, float]] = {}

    def start(self) -> "SimDevice":
        self.link.start()
        return self

    def produce(self, camera: str, start: float, interval_s: float, *, partial: bool = False) -> int:
        """One closed bin of ``interval_s`` starting at ``start`` (epoch): into the outbox, then the link."""
        lines = {}
        for lid in self.lines:
            rate = 0.4 * interval_s
            lines[lid] = DirectionCounts(
                forward={c: self.rng.randint(0, max(1, int(rate))) for c in CLASSES[:2]},
                backward={CLASSES[0]: self.rng.randint(0, max(1, int(rate)))})
        observed = round(interval_s * self.rng.uniform(0.3, 0.9), 3) if partial else None

        def make(seq: int) -> bytes:
            return CountsMessage(seq=seq, site=self.site, device=self.device, camera=camera,
                                 interval_start=datetime.fromtimestamp(start, timezone.utc), interval_s=interval_s,
                                 lines=lines, config_hash="sim", model="sim", partial=partial,
                                 observed_s=observed).model_dump_json().encode()

        seq = self.outbox.add(camera, self.topics.camera(self.device, camera, "counts"), make)
        self.produced[(camera, seq)] = (start, interval_s, {k: v.model_dump() for k, v in lines.items()}, time.time())
        self.link.notify()
        return seq

    def pending(self) -> int:
        return self.outbox.stats().depth

    def stop(self, flush_timeout_s: float = 5.0) -> None:
        self.link.stop(flush_timeout_s)
        self.outbox.close()


__all__ = ["SimDevice"]
