"""The fleet's count store in PostgreSQL: schema, and one transaction per batch of broker messages.

Idempotent by construction: a counts bin is keyed by (site, device, camera, seq), a health report by
(site, device, camera, ts), a controller event by (site, ts, seq), a plan by (site, ts); a redelivered
message or an outbox replay finds its key taken and changes nothing (it is counted as a duplicate).

* ``fleet_counts`` is the history of every bin, ``late`` ones included (delivered after an outage); a
  ``partial`` bin keeps its ``observed_s``.
* ``fleet_counts_live`` holds, per camera and bin length, the newest bin that was delivered on time: a
  late bin never becomes "live".
* ``fleet_devices`` is each device's status (online/offline, from its retained status and Last Will) and
  when it was last heard; ``fleet_status_events`` the history of its changes.
* ``fleet_health``, ``fleet_controller_plans``, ``fleet_controller_events``, ``fleet_controller_modes``
  (each change of the controller's mode: normal / fail-safe / manual).
* ``fleet_rejected``: every message that could not be stored (malformed, or a payload naming another
  device than its topic), with the reason: nothing is dropped silently.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

from roadside.core.errors import RoadsideError
from roadside.core.payloads import AuditEvent, CountsMessage, HealthMessage, PlanMessage, StateMessage

log = logging.getLogger("roadside.fleet.store")

SCHEMA = """
CREATE TABLE IF NOT EXISTS fleet_counts (
    site text NOT NULL, device text NOT NULL, camera text NOT NULL, seq bigint NOT NULL,
    interval_start timestamptz NOT NULL, interval_s double precision NOT NULL,
    late boolean NOT NULL, partial boolean NOT NULL, observed_s double precision,
    lines jsonb NOT NULL, config_hash text NOT NULL, model text NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (site, device, camera, seq));
CREATE INDEX IF NOT EXISTS fleet_counts_by_time ON fleet_counts (site, interval_start);
CREATE TABLE IF NOT EXISTS fleet_counts_live (
    site text NOT NULL, device text NOT NULL, camera text NOT NULL, interval_s double precision NOT NULL,
    seq bigint NOT NULL, interval_start timestamptz NOT NULL, lines jsonb NOT NULL, partial boolean NOT NULL,
    observed_s double precision, stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (site, device, camera, interval_s));
CREATE TABLE IF NOT EXISTS fleet_health (
    site text NOT NULL, device text NOT NULL, camera text NOT NULL, ts timestamptz NOT NULL,
    state text NOT NULL, reasons jsonb NOT NULL, fps_in double precision, fps_processed double precision,
    detector_latency_ms double precision, last_frame_age_s double precision,
    stored_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (site, device, camera, ts));
CREATE TABLE IF NOT EXISTS fleet_devices (
    site text NOT NULL, device text NOT NULL, status text, status_since timestamptz,
    last_seen timestamptz NOT NULL, last_counts_at timestamptz,
    PRIMARY KEY (site, device));
CREATE TABLE IF NOT EXISTS fleet_status_events (
    id bigserial PRIMARY KEY, site text NOT NULL, device text NOT NULL, status text NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE TABLE IF NOT EXISTS fleet_controller_plans (
    site text NOT NULL, ts timestamptz NOT NULL, policy text NOT NULL, mode text NOT NULL, plan jsonb NOT NULL,
    PRIMARY KEY (site, ts));
CREATE TABLE IF NOT EXISTS fleet_controller_events (
    site text NOT NULL, ts timestamptz NOT NULL, seq bigint NOT NULL, type text NOT NULL, t double precision,
    detail jsonb NOT NULL, PRIMARY KEY (site, ts, seq));
CREATE TABLE IF NOT EXISTS fleet_controller_modes (
    site text NOT NULL, ts timestamptz NOT NULL, mode text NOT NULL, PRIMARY KEY (site, ts));
CREATE TABLE IF NOT EXISTS fleet_rejected (
    id bigserial PRIMARY KEY, routing_key text NOT NULL, error text NOT NULL, payload bytea NOT NULL,
    at timestamptz NOT NULL DEFAULT clock_timestamp());
"""

#: the longest payload kept in fleet_rejected (bytes)
MAX_REJECTED_BYTES = 64 * 1024


class StoreError(RoadsideError):
    """The database cannot be reached or written."""


@dataclass
class Incoming:
    """One broker message, already parsed: which site/device/camera it came from (by its topic) and what."""

    routing_key: str
    site: str
    device: str
    camera: str | None
    kind: str  # counts | health | status | plan | state | events | ...
    body: bytes


@dataclass
class BatchResult:
    stored: dict[str, int] = field(default_factory=dict)  # kind -> new rows
    duplicates: int = 0  # messages whose key was already stored (redeliveries, replays)
    rejected: int = 0
    ignored: int = 0  # kinds the store does not keep (presence, controller command)


def connect(dsn: str):
    import psycopg

    try:
        return psycopg.connect(dsn, autocommit=False, connect_timeout=10)
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to the fleet database: {e}".strip()) from None


def create_schema(conn) -> None:
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(7411)")  # two collectors starting at once
        cur.execute(SCHEMA)
    conn.commit()


def _check_identity(msg, m: Incoming) -> None:
    for attr, want in (("site", m.site), ("device", m.device), ("camera", m.camera)):
        have = getattr(msg, attr, want)
        if want is not None and have != want:
            raise ValueError(f"the payload names {attr} {have!r} but was published under {attr} {want!r}'s topic")


def write_batch(conn, messages: list[Incoming]) -> BatchResult:
    """Store ``messages`` in one transaction (committed here). Malformed messages go to fleet_rejected."""
    res = BatchResult()
    counts, health, plans, events, modes, rejected = [], [], [], [], [], []
    seen: dict[tuple[str, str], datetime] = {}
    status: dict[tuple[str, str], str] = {}
    counts_at: dict[tuple[str, str], datetime] = {}
    now = datetime.now(timezone.utc)
    for m in messages:
        try:
            if m.kind == "unknown":
                raise ValueError("not a topic of the roadside topic contract (core/topics.py)")
            if m.device != "controller":
                seen[(m.site, m.device)] = now
            if m.kind == "counts":
                c = CountsMessage.model_validate_json(m.body)
                _check_identity(c, m)
                counts.append(c)
                counts_at[(m.site, m.device)] = now
            elif m.kind == "health":
                h = HealthMessage.model_validate_json(m.body)
                _check_identity(h, m)
                health.append(h)
            elif m.kind == "status" and m.device != "controller":
                text = m.body.decode("utf-8", "replace").strip()
                if text not in ("online", "offline"):
                    raise ValueError(f"a device status is online or offline, not {text[:40]!r}")
                status[(m.site, m.device)] = text
            elif m.kind == "plan":
                p = PlanMessage.model_validate_json(m.body)
                _check_identity(p, m)
                plans.append(p)
                modes.append((p.site, p.ts, p.mode))
            elif m.kind == "state":
                s = StateMessage.model_validate_json(m.body)
                _check_identity(s, m)
                modes.append((s.site, s.ts, s.mode))
            elif m.kind == "events":
                e = AuditEvent.model_validate_json(m.body)
                _check_identity(e, m)
                events.append(e)
            else:
                res.ignored += 1
        except ValueError as e:  # pydantic's ValidationError is a ValueError
            rejected.append((m.routing_key, str(e)[:2000], m.body[:MAX_REJECTED_BYTES]))
    with conn.cursor() as cur:
        new = 0
        for c in counts:
            cur.execute(
                "INSERT INTO fleet_counts (site, device, camera, seq, interval_start, interval_s, late, partial, observed_s,"
                " lines, config_hash, model) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (c.site, c.device, c.camera, c.seq, c.interval_start, c.interval_s, c.late, c.partial, c.observed_s,
                 json.dumps({k: v.model_dump() for k, v in c.lines.items()}), c.config_hash, c.model))
            new += cur.rowcount
        res.stored["counts"] = new
        res.duplicates += len(counts) - new
        live = {}
        for c in counts:
            if not c.late:
                key = (c.site, c.device, c.camera, c.interval_s)
                if key not in live or live[key].interval_start < c.interval_start:
                    live[key] = c
        for key in sorted(live):  # one lock order for every collector: no deadlocks between them
            c = live[key]
            cur.execute(
                "INSERT INTO fleet_counts_live AS l (site, device, camera, interval_s, seq, interval_start, lines, partial,"
                " observed_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (site, device, camera, interval_s)"
                " DO UPDATE SET seq = excluded.seq, interval_start = excluded.interval_start, lines = excluded.lines,"
                " partial = excluded.partial, observed_s = excluded.observed_s, stored_at = clock_timestamp()"
                " WHERE l.interval_start < excluded.interval_start",
                (*key, c.seq, c.interval_start, json.dumps({k: v.model_dump() for k, v in c.lines.items()}), c.partial,
                 c.observed_s))
        new = 0
        for h in health:
            cur.execute(
                "INSERT INTO fleet_health (site, device, camera, ts, state, reasons, fps_in, fps_processed,"
                " detector_latency_ms, last_frame_age_s) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                (h.site, h.device, h.camera, h.ts, h.state, json.dumps(h.reasons), h.fps_in, h.fps_processed,
                 h.detector_latency_ms, h.last_frame_age_s))
            new += cur.rowcount
        res.stored["health"] = new
        res.duplicates += len(health) - new
        for key in sorted(seen):
            st = status.get(key)
            if st is not None:
                cur.execute("INSERT INTO fleet_status_events (site, device, status) SELECT %s, %s, %s WHERE"
                            " (SELECT status FROM fleet_devices WHERE site = %s AND device = %s) IS DISTINCT FROM %s",
                            (*key, st, *key, st))
            cur.execute(
                "INSERT INTO fleet_devices AS d (site, device, status, status_since, last_seen, last_counts_at)"
                " VALUES (%s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE clock_timestamp() END, %s, %s)"
                " ON CONFLICT (site, device) DO UPDATE SET last_seen = GREATEST(d.last_seen, excluded.last_seen),"
                " last_counts_at = COALESCE(GREATEST(d.last_counts_at, excluded.last_counts_at), d.last_counts_at,"
                " excluded.last_counts_at),"
                " status_since = CASE WHEN excluded.status IS NOT NULL AND excluded.status IS DISTINCT FROM d.status"
                " THEN clock_timestamp() ELSE d.status_since END,"
                " status = COALESCE(excluded.status, d.status)",
                (*key, st, st, seen[key], counts_at.get(key)))
        new = 0
        for p in plans:
            cur.execute("INSERT INTO fleet_controller_plans (site, ts, policy, mode, plan) VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING", (p.site, p.ts, p.policy, p.mode, json.dumps(p.plan)))
            new += cur.rowcount
        res.stored["plans"] = new
        new = 0
        for e in events:
            cur.execute("INSERT INTO fleet_controller_events (site, ts, seq, type, t, detail) VALUES (%s, %s, %s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING", (e.site, e.ts, e.seq, e.type, e.t, json.dumps(e.detail, default=str)))
            new += cur.rowcount
        res.stored["events"] = new
        res.duplicates += len(events) - new
        for site, ts, mode in sorted(modes, key=lambda x: (x[0], x[1])):
            # a mode change: the newest earlier entry of the site has another mode
            cur.execute("INSERT INTO fleet_controller_modes (site, ts, mode) SELECT %s, %s, %s WHERE"
                        " (SELECT mode FROM fleet_controller_modes WHERE site = %s AND ts <= %s ORDER BY ts DESC LIMIT 1)"
                        " IS DISTINCT FROM %s ON CONFLICT DO NOTHING", (site, ts, mode, site, ts, mode))
        for r in rejected:
            cur.execute("INSERT INTO fleet_rejected (routing_key, error, payload) VALUES (%s, %s, %s)", r)
        res.rejected = len(rejected)
    conn.commit()
    for r in rejected:
        log.warning("rejected a message on %s: %s", r[0], r[1])
    return res


def utc(ts: str | datetime) -> datetime:
    """An ISO-8601 time (``2026-12-01T08:00``, ``...Z``, ``...+01:00``); naive means UTC."""
    d = ts if isinstance(ts, datetime) else datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


__all__ = ["BatchResult", "Incoming", "SCHEMA", "StoreError", "connect", "create_schema", "utc", "write_batch"]
