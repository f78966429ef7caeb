"""The table of every Prometheus metric of the edge service's ``/metrics``, generated from the collectors
themselves: they are run against a status in which every optional value is present, and each family they
yield becomes a row (name as exposed, type, labels, meaning). ``roadside edge schema --update-doc
edge/README_SERVICE.md`` writes it between ``<!-- reference:metrics -->`` markers; a test keeps it current,
and the alert rules and dashboard under ``deploy/`` may use only these names."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, ProcessCollector

from roadside.edge.health_api import ServiceCollector
from roadside.edge.status import (BrokerStatus, CameraStatus, OutboxStatus, Readiness, ServiceStatus,
                                  SystemStatus)


def _sample_status() -> ServiceStatus:
    cam = CameraStatus(
        state="ok", reasons=[], source="cam.mp4", source_state="live", fps_in=30.0, fps_processed=30.0, frames_in=1,
        frames_processed=1, frames_dropped=0, detector_latency_ms=10.0, last_frame_age_s=0.1, last_publish_age_s=1.0,
        reconnects=0, loops=0, last_source_error=None, processing_errors=0, bins_emitted=1, width=640, height=480,
        source_fps=30.0, model="m", config_hash="h")
    return ServiceStatus(
        site="s", device="d", uptime_s=1.0, ready=True, models=["m"], model_loaded=True,
        broker=BrokerStatus(address="b:1883", state="connected", connected=True, last_error=None, connects=1,
                            counts_published=1, counts_acked=1, late_published=0, realtime_dropped=0,
                            last_publish_age_s=1.0, topic_prefix="roadside/s/d"),
        outbox=OutboxStatus(depth=1, bytes=10, oldest_age_s=1.0, dropped={"cam1": 0}, dropped_total=0, max_bytes=1,
                            max_age_s=1.0, next_seq={"cam1": 1}),
        cameras={"cam1": cam},
        system=SystemStatus(cpu_temperature_c=50.0, disk_free_bytes=1, state_dir="/", rss_bytes=1, threads=1, pid=1))


class _SampleView:
    def status(self) -> ServiceStatus:
        return _sample_status()

    def readiness(self) -> Readiness:
        return Readiness(ready=True, reasons=[])


class _SampleWatch:
    def snapshot(self) -> dict:
        return {"heard": True, "status": "online", "mode": "normal", "failsafe_phases": {},
                "state_ts": "2026-01-01T00:00:00+00:00"}


def metric_rows() -> list[tuple[str, str, str, str]]:
    """(exposed name, type, labels, meaning) of every metric of ``/metrics``, in the order they appear."""
    from roadside.edge.console import ControllerCollector

    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(_SampleView()))
    reg.register(ControllerCollector(_SampleWatch()))  # type: ignore[arg-type]
    ProcessCollector(registry=reg)
    rows = []
    for fam in reg.collect():
        names = sorted({s.name for s in fam.samples if not s.name.endswith("_created")}) or [fam.name]
        labels = sorted({k for s in fam.samples for k in s.labels})
        for name in names:
            rows.append((name, fam.type, ", ".join(labels), fam.documentation))
    return rows


def metric_names() -> set[str]:
    return {r[0] for r in metric_rows()}


def metrics_table() -> str:
    out = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    out += [f"| `{n}` | {t} | {', '.join(f'`{x}`' for x in lab.split(', ')) if lab else ''} | {d} |"
            for n, t, lab, d in metric_rows()]
    return "\n".join(out)


__all__ = ["metric_names", "metric_rows", "metrics_table"]
