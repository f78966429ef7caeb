"""Soak test of the edge service: ``roadside edge soak``.

Runs ``roadside edge run`` as a child process against clips looped at real time (fake live cameras; the
clips of ``--videos DIR``) and a private Mosquitto on a free port (:mod:`roadside.core.testing`),
subscribes to everything it publishes, and prints over time: the service's RSS (and its decoder
processes'), thread and file-descriptor counts, frames and counts messages. Mid-run the broker is stopped
for a while (store-and-forward under load). At the end the service is stopped with SIGTERM and every
counts message it produced (its outbox's sequence numbers) is checked against what the subscriber
received: none may be missing, apart from those the outbox recorded as dropped, and each camera's messages
must arrive in ``seq`` order. The service's tests use the same delivery accounting.
"""
from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from roadside.core.errors import RoadsideError
from roadside.core.testing import PrivateBroker, Recorder, free_port
from roadside.edge.system_metrics import child_pids, process_stats

#: where ``--videos`` points by default: the development checkout's shared clips (relative to the
#: current directory, as in the built-in configuration)
DEV_VIDEOS = "../shared/data/videos"
#: the clips used first when the folder has them (the published soak results used the first two)
CLIPS = ["intersection_4way.mp4", "freeway_overpass.mp4", "dense_mixed_arterial.mp4", "car_park_overhead.mp4"]
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".ts")


def soak_clips(videos: str | Path, cameras: int) -> list[Path]:
    """``cameras`` clips from the folder (the known ones first, then the others by name, repeated as needed)."""
    folder = Path(videos).resolve()  # the service reads them from its own configuration file's folder
    if not folder.is_dir():
        raise RoadsideError(f"--videos {videos}: no such folder (the soak test loops the video clips of a folder; "
                            f"give --videos DIR)")
    known = [folder / c for c in CLIPS if (folder / c).is_file()]
    others = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p not in known)
    pool = known + others
    if not pool:
        raise RoadsideError(f"--videos {videos}: no video clips ({', '.join(VIDEO_SUFFIXES)}) in the folder")
    return [pool[i % len(pool)] for i in range(cameras)]


def first_arrivals(counts: list[dict]) -> list[int]:
    """``seq`` values in arrival order, each kept at its first arrival."""
    seen, out = set(), []
    for m in counts:
        if m["seq"] not in seen:
            seen.add(m["seq"])
            out.append(m["seq"])
    return out


def outbox_accounting(db: Path) -> tuple[dict[str, int], dict[str, set[int]], int]:
    """(next seq per camera, dropped seqs per camera, messages still pending) from an outbox database."""
    con = sqlite3.connect(str(db))
    try:
        produced = dict(con.execute("SELECT camera, next_seq FROM sequences").fetchall())
        dropped: dict[str, set[int]] = {}
        for cam, a, b in con.execute("SELECT camera, first_seq, last_seq FROM dropped"):
            dropped.setdefault(cam, set()).update(range(a, b + 1))
        pending = con.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        con.close()
    return produced, dropped, pending


def check_delivery(recorder: Recorder, db: Path) -> dict:
    """Every produced counts message arrived (bar recorded drops), each camera in seq order."""
    produced, dropped, pending = outbox_accounting(db)
    per_cam = {}
    for cam, n in produced.items():
        msgs = recorder.payloads(f"/{cam}/counts")
        arrivals = first_arrivals(msgs)
        expected = set(range(n)) - dropped.get(cam, set())
        per_cam[cam] = {
            "produced": n, "dropped": len(dropped.get(cam, set())), "received_unique": len(arrivals),
            "duplicates": len(msgs) - len(arrivals), "late": sum(1 for m in msgs if m.get("late")),
            "missing": sorted(expected - set(arrivals)), "unexpected": sorted(set(arrivals) - set(range(n))),
            "in_order": arrivals == sorted(arrivals),
        }
    ok = all(not c["missing"] and not c["unexpected"] and c["in_order"] for c in per_cam.values()) and pending == 0
    return {"ok": ok, "pending_in_outbox": pending, "cameras": per_cam}


def _api(port: int, path: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return json.loads(r.read())
    except Exception:
        return None


def soak(minutes: float, cameras: int, model: str | None, bin_s: float, sample_s: float, outage_s: float,
         workdir: Path, videos: str | Path = DEV_VIDEOS, log=print) -> dict:
    from roadside.models.store import resolve_model

    model = str(resolve_model(model))  # None: the installed default model; a clear error when it is missing
    clips = soak_clips(videos, cameras)
    broker = PrivateBroker(workdir / "broker", persistence=True).start()
    api_port = free_port()
    cfg = {
        "site": "soak", "device": "edge-soak", "state_dir": str(workdir / "state"),
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.5, "reconnect_max_s": 5},
        "api": {"host": "127.0.0.1", "port": api_port}, "health_interval_s": 5,
        "detector": {"model": model, "threads": 1}, "counting": {"bins_s": [bin_s]},
        "cameras": [{"id": f"cam{i + 1}", "source": str(c), "loop": True, "realtime": True,
                     "lines": [{"id": "mid", "a": [0, 200], "b": [2000, 200]}],
                     "zones": [{"id": "centre", "polygon": [[100, 100], [400, 100], [400, 300], [100, 300]]}]}
                    for i, c in enumerate(clips)],
    }
    conf = workdir / "site.yaml"
    conf.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rec = Recorder(broker.port, "roadside/soak/edge-soak", "soak-recorder")
    rec.wait_connected()
    svc_log = open(workdir / "service.log", "ab")
    svc = subprocess.Popen([sys.executable, "-m", "roadside.core.cli", "edge", "run", "--config", str(conf)],
                           stdout=svc_log, stderr=subprocess.STDOUT)
    samples: list[dict] = []
    t0 = time.monotonic()
    end = t0 + minutes * 60
    outage_at = t0 + minutes * 30 if outage_s > 0 else None
    outage_done = False
    log(f"soak: {cameras} camera(s), {minutes:g} min, bins {bin_s:g} s, model {Path(model).name}, broker :{broker.port}, "
        f"API :{api_port}, work dir {workdir}")
    log(f"{'t_s':>6} {'rss_MB':>7} {'dec_MB':>7} {'thr':>4} {'fds':>4} {'frames':>8} {'proc':>7} {'drop':>7} "
        f"{'counts_rx':>9} {'outbox':>6} broker")
    try:
        next_sample = t0 + 5
        while time.monotonic() < end:
            if svc.poll() is not None:
                raise RoadsideError(f"the service exited with {svc.returncode}; see {workdir / 'service.log'}")
            now = time.monotonic()
            if outage_at and not outage_done and now >= outage_at:
                log(f"soak: stopping the broker for {outage_s:g} s")
                broker.stop()
                time.sleep(outage_s)
                broker.start()
                outage_done = True
                log("soak: broker back")
            if now >= next_sample:
                next_sample += sample_s
                st = _api(api_port, "/api/status") or {}
                p = {k: v or 0 for k, v in process_stats(svc.pid).items()}
                kids = [process_stats(k)["rss_bytes"] or 0 for k in child_pids(svc.pid)]
                cams = st.get("cameras", {})
                s = {
                    "t_s": round(now - t0, 1), "rss_bytes": p["rss_bytes"], "decoders_rss_bytes": sum(kids),
                    "decoders": len(kids), "threads": p["threads"], "fds": p["fds"],
                    "frames_in": sum(c["frames_in"] for c in cams.values()),
                    "frames_processed": sum(c["frames_processed"] for c in cams.values()),
                    "frames_dropped": sum(c["frames_dropped"] for c in cams.values()),
                    "counts_received": len(rec.payloads("/counts")),
                    "outbox_depth": (st.get("outbox") or {}).get("depth"),
                    "broker": (st.get("broker") or {}).get("state"),
                }
                samples.append(s)
                log(f"{s['t_s']:>6.0f} {s['rss_bytes'] / 2**20:>7.1f} {s['decoders_rss_bytes'] / 2**20:>7.1f} "
                    f"{s['threads']:>4} {s['fds']:>4} {s['frames_in']:>8} {s['frames_processed']:>7} {s['frames_dropped']:>7} "
                    f"{s['counts_received']:>9} {s['outbox_depth']!s:>6} {s['broker']}")
            time.sleep(0.5)
        svc.send_signal(signal.SIGTERM)
        code = svc.wait(timeout=60)
        time.sleep(2)  # the last acknowledged messages reach the subscriber
    finally:
        if svc.poll() is None:
            svc.kill()
            svc.wait()
        svc_log.close()
        rec.close()
        broker.stop()
    delivery = check_delivery(rec, workdir / "state" / "outbox.sqlite")
    steady = [s for s in samples if s["t_s"] >= 60] or samples
    third = max(1, len(steady) // 3)
    first = statistics.median(s["rss_bytes"] for s in steady[:third])
    last = statistics.median(s["rss_bytes"] for s in steady[-third:])
    summary = {
        "minutes": minutes, "cameras": cameras, "bin_s": bin_s, "broker_outage_s": outage_s, "exit_code": code,
        "rss_mb_first_third": round(first / 2**20, 1), "rss_mb_last_third": round(last / 2**20, 1),
        "rss_growth_mb": round((last - first) / 2**20, 1),
        "rss_mb_min_max": [round(min(s["rss_bytes"] for s in steady) / 2**20, 1), round(max(s["rss_bytes"] for s in steady) / 2**20, 1)],
        "threads_min_max": [min(s["threads"] for s in samples), max(s["threads"] for s in samples)],
        "fds_min_max": [min(s["fds"] for s in samples), max(s["fds"] for s in samples)],
        "decoders_max": max(s["decoders"] for s in samples),
        "frames_in": samples[-1]["frames_in"], "frames_processed": samples[-1]["frames_processed"],
        "delivery": delivery,
    }
    produced = {cam: c["produced"] for cam, c in delivery["cameras"].items()}
    summary["problems"] = ([f"camera {c['id']} produced no counts message" for c in cfg["cameras"]
                            if not produced.get(c["id"])] + ([] if summary["frames_processed"] else ["no frame was processed"]))
    summary["ok"] = bool(delivery["ok"] and code == 0 and summary["rss_growth_mb"] < 50 and not summary["problems"]
                         and summary["threads_min_max"][1] - summary["threads_min_max"][0] <= 4)
    return {"summary": summary, "samples": samples}


def main_soak(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="roadside-soak-"))
    result = soak(args.minutes, args.cameras, args.model, args.bin_s, args.sample_s, args.broker_outage_s, workdir,
                  videos=args.videos or DEV_VIDEOS, log=lambda m: print(m, flush=True))
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["summary"]["ok"] else 1

