"""Issue 11: hypothesis fuzzing of every topic the controller reads, through a real Mosquitto, against the real
ControllerService running its loop.

Every example publishes a burst of hostile messages: real payloads with one value (or key) replaced by
something no edge would send (huge or negative numbers, inf/NaN, 10**400, true/false, strings, deep
nesting, junk ids), raw bytes, and status and mode texts. Then it waits until the service has received
and read them all and checks that the loop is alive, that nothing raised inside it, and that every number
the controller now holds or publishes is finite and physical."""
from __future__ import annotations

import json
import math
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.broker import wait_for
from helpers.controller import fast_config, serving
from helpers.hostile import counts, health, presence, topic
from roadside.core.broker import BrokerClient
from roadside.core.payloads import MAX_AGE_S, MAX_ZONE_VEHICLES

HUGE = "1" + "0" * 400  # 10**400: parses as an int of 401 digits, or as inf when read as a float
DEEP = "[" * 3000 + "]" * 3000

hostile_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e305, 1e308, -1e308, 2**53 + 1, 2**64, -1, 0, 1e-300, 5e-324]),
)
hostile_values = st.one_of(
    hostile_numbers, st.booleans(), st.none(), st.text(max_size=30),
    st.sampled_from(["__HUGE__", "__DEEP__"]),
    st.lists(st.integers(), max_size=5), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
ids = st.one_of(st.sampled_from(["ns_line", "ns_stop", "ns_queue", "ew_stop", "car", "cam1"]),
                st.text(max_size=70))


def _paths(obj, prefix=()):
    """Every (path, value) of a JSON object, containers included."""
    yield prefix, obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))


def _render(obj) -> bytes:
    text = json.dumps(obj)  # inf/nan become Infinity/NaN, as an attacker's serializer writes them
    return text.replace('"__HUGE__"', HUGE).replace('"__DEEP__"', DEEP).encode()


@st.composite
def hostile_message(draw):
    kind = draw(st.sampled_from(["counts", "presence", "health", "status", "mode", "bytes"]))
    cam = draw(st.sampled_from(["cam1", "cam2"]))
    if kind == "status":
        return "roadside/testsite/edge1/status", draw(st.sampled_from([b"online", b"offline", b"", b"\xff", b"ONLINE ",
                                                                         b"x" * 1000]))
    if kind == "mode":
        body = draw(st.one_of(
            st.fixed_dictionaries({"mode": st.sampled_from(["auto", "manual", "off", 1]),
                                   "stage": st.one_of(st.sampled_from(["EW", "NS", "NSL", "nope"]), hostile_values)}),
            hostile_values))
        return "roadside/testsite/controller/mode", _render(body)
    if kind == "bytes":
        return topic(draw(st.sampled_from(["counts", "presence", "health"])), cam), draw(st.binary(max_size=300))
    seq = draw(st.integers(0, 10**6))
    base = {"counts": counts(seq, camera=cam, lines={"ns_line" if cam == "cam1" else "ew_line":
                                                      {"forward": {"car": 3}, "backward": {"bus": 1}}}),
            "presence": presence(camera=cam, zones={("ns_queue" if cam == "cam1" else "ew_queue"):
                                                    {"occupied": True, "count": 4, "max_dwell_s": 9.5}}),
            "health": health(camera=cam, fps_in=10, reasons=["x"])}[kind]
    paths = [p for p, _ in _paths(base) if p]
    path = draw(st.sampled_from(paths))
    d = base
    for k in path[:-1]:
        d = d[k]
    if draw(st.booleans()):
        d[path[-1]] = draw(hostile_values)
    else:  # a hostile key next to the real one
        d[draw(ids)] = d[path[-1]] if draw(st.booleans()) else draw(hostile_values)
    return topic(kind, cam), _render(base)


@pytest.fixture(scope="module")
def controller():
    from helpers.broker import Mosquitto

    broker = Mosquitto(persistence=False).start()
    cfg = fast_config(broker.port, timing={"policy": "adaptive"})
    try:
        with serving(cfg, broker.port) as (svc, edge, listener, th):
            pub = BrokerClient(svc.cfg.mqtt, "fuzzer", name="fuzzer").start()
            assert pub.wait_connected(10)
            yield svc, pub, listener, th
            pub.stop(0.5)
    finally:
        broker.close()


def _finite(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and math.isfinite(x))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(burst=st.lists(hostile_message(), min_size=1, max_size=12))
def test_no_hostile_message_breaks_the_controller(controller, burst):
    svc, pub, listener, th = controller
    before = svc.received
    for tp, payload in burst:
        pub.publish(tp, payload, qos=1)
    wait_for(lambda: svc.received >= before + len(burst) and len(svc.inbox) == 0, 20, "the burst received and read")
    time.sleep(2 * svc.cfg.tick_s)  # at least one tick over what was read
    assert th.is_alive()
    assert svc.ctrl.input_errors == 0 and svc.ctrl.policy_errors == 0
    inputs = svc.ctrl.inputs
    for z in inputs.zones.values():
        assert 0 <= z.state.count <= MAX_ZONE_VEHICLES and 0 <= z.state.max_dwell_s <= MAX_AGE_S
    for pi in inputs.phase_inputs(svc.ctrl.now).values():
        assert all(_finite(v) for v in (pi.queue, pi.max_wait_s, pi.flow_vph))
    assert set(inputs.cameras) == {("edge1", "cam1"), ("edge1", "cam2")}
    assert {k for k in inputs.zones} <= inputs.known_zones and set(inputs.counts) <= inputs.known_lines


def test_what_the_fuzzing_published_stays_physical(controller):
    """Run after the fuzzing (same service): every decision the controller explained names finite numbers."""
    svc, pub, listener, th = controller
    for ev in listener.events("decision"):
        text = json.dumps(ev["detail"])
        assert "Infinity" not in text and "NaN" not in text and "e+" not in ev["detail"]["reason"], text[:500]
    assert th.is_alive()
