"""The console's sources: the last hour of counts recorded as bins go into the outbox, and the controller as
the edge box sees it on a real broker (a real ControllerService publishing its retained topics), also as the
roadside_controller_* metrics the alert rules use."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from helpers.broker import Mosquitto, wait_for
from roadside.controller.config import parse_controller_config
from roadside.controller.service import ControllerService
from roadside.core.payloads import CountsMessage, DirectionCounts
from roadside.demo.runner import demo_configs
from roadside.edge.console import Console, CountsHistory, HistoryCounts
from roadside.edge.service_config import edge_config_from


def _counts(seq: int, start: datetime, interval: float, fw: int, bw: int) -> CountsMessage:
    return CountsMessage(seq=seq, site="demo", device="edge-1", camera="cam1", interval_start=start, interval_s=interval,
                         lines={"ew_middle": DirectionCounts(forward={"car": fw}, backward={"truck": bw})},
                         config_hash="h", model="m")


class _Store:
    """The next sink: builds each message with its seq, as the outbox does."""

    def __init__(self) -> None:
        self.stored: list[CountsMessage] = []

    def put(self, camera, message) -> None:
        self.stored.append(message(len(self.stored)))


def test_the_history_keeps_an_hour_of_the_shortest_bin_and_passes_every_message_on():
    store, history = _Store(), CountsHistory({"cam1": 10.0})
    sink = HistoryCounts(store, history)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    for i in range(400):  # 4000 s of 10-s bins, and a 60-s bin now and then
        sink.put("cam1", lambda seq, i=i: _counts(seq, t0 + timedelta(seconds=10 * i), 10.0, i % 3, 1))
        if i % 6 == 5:
            sink.put("cam1", lambda seq, i=i: _counts(seq, t0 + timedelta(seconds=10 * i - 50), 60.0, 9, 9))
    assert len(store.stored) == 400 + 66 and [m.seq for m in store.stored] == list(range(466))
    bins = history.snapshot()["cam1"]["bins"]
    assert history.snapshot()["cam1"]["interval_s"] == 10.0
    assert bins[-1]["t"] - bins[0]["t"] == 3600 and len(bins) == 361  # the last hour, 10-s bins only
    assert bins[-1]["lines"]["ew_middle"] == {"forward": 399 % 3, "backward": 1}


def _metrics(console: Console) -> dict[str, list]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(console.collector())
    return {f.name: f.samples for f in text_string_to_metric_families(generate_latest(reg).decode())}


def test_the_console_follows_the_controller_and_exports_it_as_metrics(tmp_path):
    edge, ctrl = demo_configs()
    with Mosquitto(tmp_path / "broker", persistence=False) as broker:
        edge["mqtt"] = {"host": "127.0.0.1", "port": broker.port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
        ctrl["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
        console = Console(edge_config_from(edge, tmp_path / "edge.yaml")).start()
        try:
            wait_for(lambda: console.controller.client.connected, 10, "the console's connection")
            assert _metrics(console)["roadside_controller_up"][0].value == 0  # never heard of
            svc = ControllerService(parse_controller_config(ctrl))
            svc.start()
            stop = threading.Event()
            runner = threading.Thread(target=svc.run, args=(stop,), daemon=True)
            runner.start()
            try:
                wait_for(lambda: console.controller.snapshot()["stage"] is not None, 15, "the controller's state")
                snap = console.controller.snapshot()
                # no camera data: the demo's phases are in fail-safe, and the console says so
                assert snap["policy"] == "actuated" and snap["status"] == "online"
                m = _metrics(console)
                assert m["roadside_controller_up"][0].value == 1
                modes = {s.labels["mode"]: s.value for s in m["roadside_controller_mode"]}
                assert modes[snap["mode"]] == 1 and sum(modes.values()) == 1
                assert m["roadside_controller_state_age_seconds"][0].value < 10
            finally:
                stop.set()
                runner.join(5)
                svc.stop()
            wait_for(lambda: console.controller.snapshot()["status"] == "offline", 10, "offline from the controller")
            m = _metrics(console)
            assert m["roadside_controller_up"][0].value == 0
            assert all(s.value == 0 for s in m["roadside_controller_mode"])
        finally:
            console.stop()
