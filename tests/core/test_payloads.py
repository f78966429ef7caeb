"""Every payload number is bounded to physical values: a message that could overflow a computation downstream
is rejected where it is parsed, identically on every side."""
from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from roadside.core.payloads import CountsMessage, HealthMessage, ModeRequest, PresenceMessage

COUNTS = {"seq": 3, "site": "s1", "device": "d1", "camera": "c1", "interval_start": "2026-12-01T10:00:00Z",
          "interval_s": 60, "lines": {"L1": {"forward": {"car": 12, "bus": 1}, "backward": {}}}, "config_hash": "ab",
          "model": "picodet_s_416_coco", "partial": False, "observed_s": 60.0}
PRESENCE = {"site": "s1", "device": "d1", "camera": "c1", "ts": "2026-12-01T10:00:00Z",
            "zones": {"z1": {"occupied": True, "count": 2, "max_dwell_s": 4.5}}}
HEALTH = {"site": "s1", "device": "d1", "camera": "c1", "ts": "2026-12-01T10:00:00Z", "state": "ok", "fps_in": 25}


def _with(base: dict, path: str, value) -> bytes:
    data = json.loads(json.dumps(base))
    *head, last = path.split(".")
    d = data
    for k in head:
        d = d[k]
    d[last] = value
    # json.dumps writes inf as Infinity, which is what an attacker sends; 1e309 parses as inf too
    return json.dumps(data).encode()


def test_real_messages_parse():
    assert CountsMessage.model_validate_json(json.dumps(COUNTS)).lines["L1"].total() == 13
    assert PresenceMessage.model_validate_json(json.dumps(PRESENCE)).zones["z1"].count == 2
    assert HealthMessage.model_validate_json(json.dumps(HEALTH)).fps_in == 25


@pytest.mark.parametrize("model,base,path,value", [
    (CountsMessage, COUNTS, "lines.L1.forward.car", 1e305),  # crashed the controller with OverflowError
    (CountsMessage, COUNTS, "lines.L1.forward.car", 10**18),  # drove a real decision
    (CountsMessage, COUNTS, "lines.L1.forward.car", 400),  # 400 vehicles in 60 s on one line
    (CountsMessage, COUNTS, "lines.L1.forward.car", True),
    (CountsMessage, COUNTS, "interval_s", float("inf")),
    (CountsMessage, COUNTS, "interval_s", 0),
    (CountsMessage, COUNTS, "observed_s", 3600),
    (CountsMessage, COUNTS, "seq", 2**64),
    (CountsMessage, COUNTS, "camera", "../x"),
    (PresenceMessage, PRESENCE, "zones.z1.count", 1e309),
    (PresenceMessage, PRESENCE, "zones.z1.max_dwell_s", float("inf")),
    (PresenceMessage, PRESENCE, "zones.z1.max_dwell_s", float("nan")),
    (HealthMessage, HEALTH, "fps_in", 1e12),
    (HealthMessage, HEALTH, "reasons", ["x"] * 1000),
])
def test_unphysical_values_are_rejected(model, base, path, value):
    with pytest.raises(ValidationError):
        model.model_validate_json(_with(base, path, value))


def test_too_many_ids_in_one_message_are_rejected():
    lines = {f"L{i}": {"forward": {"car": 1}} for i in range(1000)}
    with pytest.raises(ValidationError):
        CountsMessage.model_validate_json(_with(COUNTS, "lines", lines))


def test_a_mode_request_names_a_stage_by_identifier():
    assert ModeRequest.model_validate_json('{"mode": "manual", "stage": "NS"}').stage == "NS"
    with pytest.raises(ValidationError):
        ModeRequest.model_validate_json(json.dumps({"mode": "manual", "stage": "x" * 10_000}))
