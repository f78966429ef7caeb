"""``roadside fleet report``: a site's 15-minute counts per device, camera, line, direction and class (the
table traffic engineers expect), with each bin's coverage, plus device health, offline and controller
fail-safe periods, from the fleet's PostgreSQL store.

Counts: each camera publishes bins of one or more lengths (e.g. 60 s and 900 s); per camera the report
uses its longest bin length that divides 15 minutes, so nothing is counted twice. A slot's *coverage* is
the share of its 900 s that those bins observed (``observed_s`` of partial bins, missing bins count 0):
1.0 is a complete count, 0.5 means half of the quarter hour is missing and the figure is a lower bound.
A slot with coverage 0 has no count (empty), not a count of 0.
"""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone

SLOT_S = 900


def _slot(t: datetime) -> datetime:
    e = t.timestamp()
    return datetime.fromtimestamp(e - e % SLOT_S, timezone.utc)


def counts_table(conn, site: str, t1: datetime, t2: datetime) -> list[dict]:
    rows = conn.execute(
        """WITH bins AS (
               SELECT device, camera, interval_s, interval_start, lines, COALESCE(observed_s, interval_s) AS observed
               FROM fleet_counts
               WHERE site = %(site)s AND interval_start >= %(t1)s AND interval_start < %(t2)s
                 AND interval_s <= %(slot)s AND mod(%(slot)s::numeric, interval_s::numeric) = 0),
           chosen AS (SELECT device, camera, max(interval_s) AS interval_s FROM bins GROUP BY device, camera)
           SELECT b.device, b.camera, b.interval_s, b.interval_start, b.observed, b.lines
           FROM bins b JOIN chosen c USING (device, camera, interval_s)""",
        {"site": site, "t1": t1, "t2": t2, "slot": SLOT_S}).fetchall()
    coverage: dict[tuple, float] = {}
    vehicles: dict[tuple, int] = {}
    combos: dict[tuple, set] = {}
    bin_len: dict[tuple, float] = {}
    for device, camera, interval_s, start, observed, lines in rows:
        slot = _slot(start)
        cam = (device, camera)
        bin_len[cam] = interval_s
        coverage[(slot, *cam)] = coverage.get((slot, *cam), 0.0) + float(observed)
        for line, dirs in lines.items():
            for direction, classes in dirs.items():
                for cls, n in classes.items():
                    combos.setdefault(cam, set()).add((line, direction, cls))
                    k = (slot, *cam, line, direction, cls)
                    vehicles[k] = vehicles.get(k, 0) + int(n)
    out = []
    slot = _slot(t1)
    while slot < t2:
        for cam in sorted(combos):
            cov = min(1.0, coverage.get((slot, *cam), 0.0) / SLOT_S)
            for line, direction, cls in sorted(combos[cam]):
                out.append({"slot_start": slot.isoformat(), "device": cam[0], "camera": cam[1], "line": line,
                            "direction": direction, "class": cls,
                            "vehicles": vehicles.get((slot, *cam, line, direction, cls), 0) if cov > 0 else None,
                            "coverage": round(cov, 4), "bin_s": bin_len[cam]})
        slot += timedelta(seconds=SLOT_S)
    return out


def health_periods(conn, site: str, t1: datetime, t2: datetime) -> list[dict]:
    """Runs of one health state per camera (from the health reports in the range)."""
    rows = conn.execute("SELECT device, camera, ts, state, reasons FROM fleet_health WHERE site = %s AND ts >= %s AND ts < %s"
                        " ORDER BY device, camera, ts", (site, t1, t2)).fetchall()
    out: list[dict] = []
    for device, camera, ts, state, reasons in rows:
        last = out[-1] if out else None
        if last and last["device"] == device and last["camera"] == camera and last["state"] == state:
            last["to"] = ts.isoformat()
            continue
        if last and last["device"] == device and last["camera"] == camera:
            last["to"] = ts.isoformat()
        out.append({"device": device, "camera": camera, "state": state, "from": ts.isoformat(), "to": ts.isoformat(),
                    "reasons": reasons})
    return out


def _periods(changes: list[tuple[datetime, str]], want: str, t1: datetime, t2: datetime) -> list[dict]:
    """The periods in [t1, t2) where the value was ``want``, from time-ordered (time, value) changes."""
    out, start = [], None
    for ts, value in changes:
        if value == want and start is None:
            start = max(ts, t1)
        elif value != want and start is not None:
            if ts > t1:
                out.append({"from": start.isoformat(), "to": min(ts, t2).isoformat()})
            start = None
    if start is not None and start < t2:
        out.append({"from": start.isoformat(), "to": None})  # still going at the end of the range
    return out


def failsafe_periods(conn, site: str, t1: datetime, t2: datetime) -> list[dict]:
    rows = conn.execute("SELECT ts, mode FROM fleet_controller_modes WHERE site = %s AND ts < %s ORDER BY ts",
                        (site, t2)).fetchall()
    return _periods([(ts, m) for ts, m in rows], "fail-safe", t1, t2)


def offline_periods(conn, site: str, t1: datetime, t2: datetime) -> list[dict]:
    out = []
    devices = [r[0] for r in conn.execute("SELECT DISTINCT device FROM fleet_status_events WHERE site = %s ORDER BY 1",
                                          (site,)).fetchall()]
    for d in devices:
        rows = conn.execute("SELECT at, status FROM fleet_status_events WHERE site = %s AND device = %s AND at < %s"
                            " ORDER BY at, id", (site, d, t2)).fetchall()
        out += [{"device": d, **p} for p in _periods(rows, "offline", t1, t2)]
    return out


def build_report(conn, site: str, t1: datetime, t2: datetime) -> dict:
    return {"site": site, "from": t1.isoformat(), "to": t2.isoformat(), "slot_s": SLOT_S,
            "counts": counts_table(conn, site, t1, t2), "health": health_periods(conn, site, t1, t2),
            "offline": offline_periods(conn, site, t1, t2), "failsafe": failsafe_periods(conn, site, t1, t2)}


COLUMNS = ["slot_start", "device", "camera", "line", "direction", "class", "vehicles", "coverage", "bin_s"]


def format_report(rep: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rep, indent=1)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rep["counts"])
        return buf.getvalue()
    lines = [f"site {rep['site']}  {rep['from']} .. {rep['to']}  (15-minute counts; coverage = share of the slot observed)",
             "  ".join(f"{c:>10}" for c in COLUMNS)]
    for r in rep["counts"]:
        lines.append("  ".join(f"{'' if r[c] is None else r[c]!s:>10}" for c in COLUMNS))
    for title, key in (("health", "health"), ("offline", "offline"), ("fail-safe", "failsafe")):
        lines.append(f"{title} periods: {len(rep[key])}")
        lines += [f"  {json.dumps(p)}" for p in rep[key]]
    return "\n".join(lines) + "\n"


__all__ = ["COLUMNS", "SLOT_S", "build_report", "counts_table", "failsafe_periods", "format_report", "health_periods",
           "offline_periods"]
