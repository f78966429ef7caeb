"""Configuration: the example loads, the ITE helper follows the formulas, and bad input is named."""
from __future__ import annotations

import pytest

from helpers.controller import EXAMPLE, intersection_dict, make_config
from roadside.controller.clearance import ite_clearance, pedestrian_clearance_s, yellow_change_s
from roadside.controller.config import load_controller_config
from roadside.controller.intersection import Intersection
from roadside.core.errors import ConfigError
from roadside.core.errors import RoadsideError


def test_example_configuration_loads_and_computes_clearances():
    inter = Intersection.of(load_controller_config(EXAMPLE))
    ns = inter.phases["ns"].timing
    # ITE in imperial units, computed independently: 50 km/h = 45.57 ft/s, a = 10 ft/s^2, width 22 m + 20 ft
    v_fts = 50 / 3.6 / 0.3048
    assert ns.yellow == pytest.approx(1 + v_fts / 20, abs=0.1)
    assert ns.red_clearance == pytest.approx((22 / 0.3048 + 20) / v_fts, abs=0.1)
    ped = inter.phases["ped_ew"].timing
    assert ped.yellow == pytest.approx(14 / 1.07, abs=0.1) and ped.min_green == 7


def test_ite_yellow_grows_downhill_and_with_speed():
    assert yellow_change_s(50, -5) > yellow_change_s(50, 0) > yellow_change_s(50, 5)
    assert yellow_change_s(70) > yellow_change_s(50)
    assert yellow_change_s(20) == 3.0  # clamped to the 3 s minimum
    c = ite_clearance(60, 0, 30)
    assert c.yellow_s >= 1 + 60 / 3.6 / (2 * 3.05) and c.red_clearance_s >= (30 + 6.1) / (60 / 3.6)
    assert pedestrian_clearance_s(10.7) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="approach speed"):
        yellow_change_s(float("nan"))


def test_unknown_key_is_named_with_its_path(tmp_path):
    text = EXAMPLE.read_text().replace("passage: 2.5", "pasage: 2.5")
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_controller_config(p)
    assert isinstance(e.value, RoadsideError)
    assert "intersection.phases[0].pasage: unknown key" in str(e.value)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["stages"].append({"id": "bad", "phases": ["ns", "ew"]}), "stage 'bad': phases 'ns' and 'ew' conflict"),
    (lambda d: d["phases"][0].pop("min_green"), "phase 'ns': a vehicle phase needs min_green and max_green"),
    (lambda d: d["phases"][0].update(max_green=6.5), "must exceed min_green"),
    (lambda d: d["phases"][1].pop("red_clearance"), "phase 'nsl': give 'yellow' and 'red_clearance'"),
    (lambda d: d["phases"][3].pop("crossing_length_m"), "phase 'ped_ew': give 'ped_clearance'"),
    (lambda d: d["compatible"].append(["ns", "nope"]), "compatible[2]: unknown phase 'nope'"),
    (lambda d: d["stages"].pop(2), "phase(s) ['ew'] are in no stage"),
    (lambda d: d["phases"][1].update(yellow=2), "yellow 2.0 s is shorter than 3 s"),
])
def test_inconsistent_intersections_are_rejected_with_the_reason(mutate, message):
    inter = intersection_dict()
    mutate(inter)
    with pytest.raises(ConfigError) as e:
        make_config(intersection=inter)
    assert message in str(e.value)


def test_fixed_plan_must_name_real_stages():
    with pytest.raises(ConfigError, match="unknown stage 'XX'"):
        make_config(timing={"policy": "fixed", "fixed": {"greens": {"XX": 10}}})


def test_policy_names_are_one_list_for_schema_registry_and_command_line():
    from roadside.controller.commands import POLICY_CHOICES
    from roadside.controller.policies import POLICIES, make_policy

    assert tuple(POLICIES) == POLICY_CHOICES
    for name in POLICY_CHOICES:
        cfg = make_config(timing={"policy": name})
        policy = make_policy(cfg, Intersection.of(cfg))
        assert type(policy) is POLICIES[name] and policy.name == name
    with pytest.raises(ConfigError) as e:
        make_config(timing={"policy": "websterr"})
    assert "timing.policy: Input should be 'fixed', 'webster', 'actuated' or 'adaptive'" in str(e.value)
