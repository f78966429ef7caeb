"""``roadside demo``: the whole product on one machine, in one command.

    broker (configured | local mosquitto | embedded amqtt)
      ▲  counts, presence, health                       plan, state, events
      │                                                        │
    edge service (`roadside edge run`, a child process) ─► controller (`roadside controller run`, a child)
      replays the shared intersection clip as a live camera      commands ─► SUMO junction (sim extra; its legs
      health API, console (/), metrics                           fed by the camera's counts), else shadow mode

The edge runs on its built-in configuration (``roadside edge default-config``) and the controller on the
configuration shipped to pair with it (``controller/examples/demo.yaml``: same site, device, camera, lines
and zones); the demo only points both at the chosen broker, a free API port and a working folder, and uses
short counts bins (``--bin-s``) so that counts show within seconds. Both run as the real commands, in child
processes of their own, and are stopped (SIGTERM: flush, ``offline``) on Ctrl-C.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TextIO

import yaml

from roadside.core.broker import BrokerClient, Received
from roadside.core.errors import RoadsideError
from roadside.core.mqtt import MqttConfig
from roadside.core.topics import Topics
from roadside.demo.brokers import DemoBroker, choose_broker, port_free

log = logging.getLogger("roadside.demo")

CONTROLLER_CONFIG = "demo.yaml"  # in roadside.controller/examples
READY_TIMEOUT_S = 180.0


@dataclass
class DemoOptions:
    broker: str = "auto"            # auto | configured | mosquitto | embedded
    mqtt: str | None = None         # HOST:PORT of the configured broker (default: the edge configuration's)
    api_port: int = 8080
    bin_s: float = 10.0
    duration_s: float | None = None
    video: str | None = None
    model: str | None = None
    workdir: str | None = None
    summary_every_s: float = 2.0
    sumo: bool = True               # drive a SUMO junction when the sim extra is installed


def demo_configs() -> tuple[dict, dict]:
    """The edge's built-in configuration and the controller configuration paired with it, as YAML data."""
    from roadside.edge.service_config import default_config_text

    edge = yaml.safe_load(default_config_text())
    ctrl = yaml.safe_load(resources.files("roadside.controller").joinpath("examples", CONTROLLER_CONFIG)
                          .read_text(encoding="utf-8"))
    return edge, ctrl


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise RoadsideError(f"--mqtt {text!r}: expected HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


# -- what the demo shows -------------------------------------------------------------------------------
@dataclass
class Watch:
    """The latest of every topic of the site: counts per camera (of the demo's bin), controller state, plan
    and the last decisions. Keeps no history (it runs for hours)."""

    topics: Topics
    bin_s: float
    counts: dict[str, dict] = field(default_factory=dict)
    counts_messages: int = 0
    state: dict | None = None
    plan: dict | None = None
    decisions: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, m: Received) -> None:
        where = self.topics.parse(m.topic)
        if where is None:
            return
        try:
            data = json.loads(m.payload)
        except ValueError:
            return
        with self.lock:
            if where.kind == "counts" and isinstance(data, dict) and data.get("interval_s") == self.bin_s:
                self.counts[where.camera] = data
                self.counts_messages += 1
            elif where.from_controller and where.kind == "state":
                self.state = data
            elif where.from_controller and where.kind == "plan":
                self.plan = data
            elif where.from_controller and where.kind == "events" and data.get("type") == "decision":
                self.decisions = (self.decisions + [data])[-5:]


def _counts_text(msg: dict | None) -> str:
    if not msg:
        return "no bin yet"
    parts = []
    for line, dirs in sorted(msg.get("lines", {}).items()):
        fw = sum((dirs.get("forward") or {}).values())
        bw = sum((dirs.get("backward") or {}).values())
        parts.append(f"{line} {fw + bw} ({fw}→ {bw}←)")
    return ", ".join(parts) or "no lines"


def summary_line(status: dict | None, watch: Watch, shadow: bool) -> str:
    cams = []
    for cid, c in ((status or {}).get("cameras") or {}).items():
        cams.append(f"{cid} {c['fps_processed']:.1f} fps ({c['frames_dropped']} dropped) {c['state']}")
    with watch.lock:
        counts = "; ".join(f"{cid}: {_counts_text(m)}" for cid, m in sorted(watch.counts.items())) or "no bin yet"
        st, last = watch.state, (watch.decisions[-1] if watch.decisions else None)
    ctrl = "controller: no state yet"
    if st:
        ctrl = (f"controller {st.get('mode')}{' (shadow)' if shadow else ''}: stage {st.get('stage')}"
                + (f"→{st['changing_to']}" if st.get("changing_to") else "") + f" {st.get('time_in_stage_s', 0):.0f} s")
    if last:
        d = last.get("detail", {})
        ctrl += f", last decision {d.get('from')}→{d.get('to')} ({d.get('reason')})"
    return f"{time.strftime('%H:%M:%S')} {' '.join(cams) or 'edge: starting'} | last {watch.bin_s:g} s: {counts} | {ctrl}"


def _get_json(url: str, timeout: float = 2.0) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read())
    except Exception:  # noqa: BLE001 - not up (yet), or gone
        return None


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001 - 503 while not ready, refused before it listens
        return False


# -- the demo ----------------------------------------------------------------------------------------------
class Demo:
    def __init__(self, opts: DemoOptions, out: TextIO = sys.stdout) -> None:
        self.opts = opts
        self.out = out
        self.stop = threading.Event()
        self.procs: dict[str, subprocess.Popen] = {}
        self.broker: DemoBroker | None = None
        self.client: BrokerClient | None = None
        self.junction = None  # SumoJunction
        self.use_sumo = False
        self._own_workdir = False
        self.work: Path | None = None

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # -- preparation ---------------------------------------------------------------------------------------
    def _check_model(self, edge: dict) -> str:
        from roadside.models.store import resolve_model

        ref = self.opts.model or (edge.get("detector") or {}).get("model")
        try:
            return str(resolve_model(ref))
        except RoadsideError as e:
            raise RoadsideError(f"no detector model: {e}. Then run `roadside demo` again.") from None

    def _video(self, edge: dict) -> Path:
        src = self.opts.video or edge["cameras"][0]["source"]
        p = Path(src).expanduser()
        if not p.is_absolute():
            p = Path.cwd() / p
        if not p.is_file():
            raise RoadsideError(f"the demo clip {p} is missing: run `roadside demo` from the checkout root with the "
                                f"shared data folder beside it (../shared), or give --video FILE")
        return p.resolve()

    def prepare(self) -> dict:
        o = self.opts
        edge, ctrl = demo_configs()
        model = self._check_model(edge)
        video = self._video(edge)
        host, port = _host_port(o.mqtt) if o.mqtt else (edge["mqtt"]["host"], int(edge["mqtt"]["port"]))
        api_port = o.api_port
        if not port_free("127.0.0.1", api_port):
            from roadside.core.testing import free_port

            taken, api_port = api_port, free_port()
            self.say(f"roadside demo: port {taken} is taken; the edge's API and console use {api_port}")
        self.broker = choose_broker(host, port, o.broker)
        if o.workdir:
            work = Path(o.workdir).expanduser().resolve()
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(tempfile.mkdtemp(prefix="roadside-demo-"))
            self._own_workdir = True
        self.work = work
        b = self.broker
        bins = sorted({float(o.bin_s), 60.0})
        edge["mqtt"].update(host=b.host, port=b.port)
        edge["api"].update(host="127.0.0.1", port=api_port)
        edge["state_dir"] = str(work / "edge-state")
        edge["counting"]["bins_s"] = bins
        edge["detector"] = {**(edge.get("detector") or {}), "model": model}
        edge["cameras"][0]["source"] = str(video)
        ctrl["mqtt"].update(host=b.host, port=b.port)
        from roadside.demo.sumo_junction import available

        self.use_sumo = o.sumo and available()
        if self.use_sumo:  # the controller's commands go to the SUMO junction's cabinet adapter
            ctrl["actuator"] = {"kind": "mqtt"}
        ctrl["detection"]["counts_interval_s"] = float(o.bin_s)
        ctrl["audit_log"] = str(work / "controller-audit.jsonl")
        (work / "edge.yaml").write_text(yaml.safe_dump(edge, sort_keys=False), encoding="utf-8")
        (work / "controller.yaml").write_text(yaml.safe_dump(ctrl, sort_keys=False), encoding="utf-8")
        return {"work": work, "edge": edge, "ctrl": ctrl, "api": f"http://127.0.0.1:{api_port}", "model": model,
                "video": video}

    # -- running -------------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], work: Path) -> None:
        logf = open(work / f"{name}.log", "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "roadside.core.cli", *args], stdout=logf,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)  # Ctrl-C reaches the demo, which stops them in order
        logf.close()

    def _died(self, work: Path) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (work / f"{name}.log").read_text(errors="replace").strip().splitlines()[-15:]
                raise RoadsideError(f"the {name} exited with status {p.returncode} before the demo was stopped; "
                                    f"its log ({work / (name + '.log')}) ends:\n  " + "\n  ".join(tail))

    def run(self) -> int:
        prev = {s: signal.signal(s, lambda *_: self.stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
        clean = False
        try:
            rc = self._run()
            clean = True
            return rc
        finally:
            self.shutdown()
            clean = clean and all(p.returncode == 0 for p in self.procs.values())
            if clean and self._own_workdir and self.work is not None:
                shutil.rmtree(self.work, ignore_errors=True)  # a failed run keeps its logs
            for s, h in prev.items():
                signal.signal(s, h)

    def _run(self) -> int:
        o = self.opts
        ctx = self.prepare()
        work, edge, ctrl, api = ctx["work"], ctx["edge"], ctx["ctrl"], ctx["api"]
        topics = Topics.for_site(edge["site"], edge["mqtt"].get("prefix"))
        self.say(f"roadside demo: broker: {self.broker.description}")
        policy = ctrl["timing"]["policy"]
        if self.use_sumo:
            from roadside.demo.sumo_junction import SumoJunction

            self.junction = SumoJunction(MqttConfig(host=self.broker.host, port=self.broker.port), topics,
                                         edge["device"], edge["cameras"][0]["id"], float(o.bin_s)).start()
            self.say(f"roadside demo: controller: policy {policy}, timing a junction in SUMO: its approaches are "
                     "driven by the camera's counts, its lights by the controller's commands")
        else:
            why = "--no-sumo" if not o.sumo else "SUMO is not installed (pip install -e '.[sim]')"
            self.say(f"roadside demo: controller: policy {policy} in shadow mode ({why}): it decides and publishes "
                     "its decisions and drives no signal; the junction's own fixed plan stays in charge")
        self.watch = Watch(topics, float(o.bin_s))
        self.client = BrokerClient(MqttConfig(host=self.broker.host, port=self.broker.port), f"roadside-demo-{os.getpid()}",
                                   clean_session=True, on_message=self.watch.on_message, name="demo")
        self.client.log.setLevel(logging.ERROR)
        self.client.subscribe(f"{topics.prefix}/#", qos=0)
        self.client.start()
        self._spawn("edge", ["edge", "run", "--config", str(work / "edge.yaml")], work)
        self._spawn("controller", ["controller", "run", "--config", str(work / "controller.yaml")], work)
        self.say(f"roadside demo: starting the edge service and the controller (logs in {work}) ...")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stop.is_set():
            self._died(work)
            with self.watch.lock:
                ctrl_up = self.watch.state is not None
            if _ready(f"{api}/readyz") and ctrl_up:
                break
            if time.monotonic() > deadline:
                st = _get_json(f"{api}/readyz")
                raise RoadsideError(f"not ready after {READY_TIMEOUT_S:.0f} s: edge {st}, controller state "
                                    f"{'received' if ctrl_up else 'not received'}; logs in {work}")
            self.stop.wait(0.5)
        if self.stop.is_set():
            return 0
        cam = edge["cameras"][0]["id"]
        dev = topics.device(edge["device"])
        b = self.broker
        self.say("")
        self.say(f"roadside demo: ready: camera {cam} replays {ctx['video']} as a live camera "
                 f"(model {Path(ctx['model']).stem}); the controller times site {ctrl['site']} from its counts and zones")
        self.say(f"  console        {api}/")
        self.say(f"  health API     {api}/api/status   {api}/readyz   {api}/metrics   {api}/docs")
        self.say(f"  snapshot       {api}/api/cameras/{cam}/snapshot.jpg")
        if _ready(f"{api}/calibrate"):  # the installer's calibration page, where this version has it
            self.say(f"  calibration    {api}/calibrate")
        self.say(f"  edge topics    {dev}/status, {dev}/{cam}/counts|presence|health")
        self.say(f"  controller     {topics.prefix}/controller/state|plan|events|status")
        self.say(f"  watch them     mosquitto_sub -h {b.host} -p {b.port} -t '{topics.prefix}/#' -v")
        self.say(f"  configuration  {work / 'edge.yaml'}, {work / 'controller.yaml'}; logs {work / 'edge.log'}, "
                 f"{work / 'controller.log'}" + (" (a temporary folder, removed after a clean stop; --workdir keeps "
                                                 "it)" if self._own_workdir else ""))
        self.say("  Ctrl-C stops everything.")
        self.say("")
        tty = self.out.isatty()
        t0 = time.monotonic()
        last_print = -1e9
        while not self.stop.is_set():
            self._died(work)
            now = time.monotonic()
            if o.duration_s is not None and now - t0 >= o.duration_s:
                break
            every = o.summary_every_s if tty else max(o.summary_every_s, 10.0)
            if now - last_print >= every:
                last_print = now
                line = summary_line(_get_json(f"{api}/api/status"), self.watch, ctrl["actuator"]["kind"] == "none")
                if self.junction is not None:
                    j = self.junction.snapshot()
                    line += (f" | SUMO t={j.sim_time:.0f} s: {j.inserted} entered, {j.vehicles} on the legs, "
                             f"{j.halting} halted, {j.arrived} through, green {j.green}")
                if tty:
                    width = shutil.get_terminal_size((160, 20)).columns
                    self.out.write("\r" + line[: width - 1].ljust(width - 1))
                    self.out.flush()
                else:
                    self.say(line)
            self.stop.wait(0.5)
        if tty:
            self.say("")
        return 0

    def shutdown(self) -> None:
        """Controller first (its ``offline``), then the edge (flushes its open bins), then the broker."""
        stopping = [n for n in ("controller", "edge") if n in self.procs and self.procs[n].poll() is None]
        if stopping:
            self.say("roadside demo: stopping " + " and ".join(stopping) + " ...")
        for name in ("controller", "edge"):
            p = self.procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                self.say(f"roadside demo: the {name} did not stop within 30 s; killing it")
                p.kill()
                p.wait()
        if self.junction is not None:
            self.junction.stop()
            self.junction = None
        if self.client is not None:
            self.client.stop(0.5, final=False)
            self.client = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        if self.procs:
            codes = ", ".join(f"{n} {p.returncode}" for n, p in self.procs.items())
            self.say(f"roadside demo: stopped (exit status: {codes})")


def run_demo(opts: DemoOptions, out: TextIO = sys.stdout) -> int:
    return Demo(opts, out).run()


__all__ = ["Demo", "DemoOptions", "Watch", "demo_configs", "run_demo", "summary_line"]
