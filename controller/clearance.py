"""Change and clearance intervals by the ITE formulas (Institute of Transportation Engineers, *Guidelines
for Determining Traffic Signal Change and Clearance Intervals*, 2020), in SI units.

* Yellow change: ``Y = t + v / (2a + 2gG)``; t perception-reaction time (1 s), v the 85th-percentile approach
  speed (m/s), a the comfortable deceleration (3.05 m/s^2 = 10 ft/s^2), g = 9.81 m/s^2 and G the approach
  grade as a fraction (uphill positive, downhill negative).
* Red clearance: ``R = (W + L) / v``; W the distance from the stop line to the far side of the last
  conflicting lane, L the design vehicle length (6.1 m = 20 ft).
* Pedestrian clearance (flashing DON'T WALK): crossing length / walking speed (1.07 m/s = 3.5 ft/s, MUTCD).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

GRAVITY = 9.81
#: Usual bounds on the yellow interval (MUTCD: 3 to 6 s); the formula's result is clamped to them.
YELLOW_MIN_S = 3.0
YELLOW_MAX_S = 6.0


@dataclass(frozen=True)
class Clearance:
    yellow_s: float
    red_clearance_s: float


def _check(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name}={value} is outside [{low}, {high}]")


def yellow_change_s(speed_kmh: float, grade_percent: float = 0.0, reaction_s: float = 1.0,
                    decel_mps2: float = 3.05) -> float:
    """ITE yellow change interval (s) for an approach speed (km/h) and grade (percent, uphill positive)."""
    _check("approach speed (km/h)", speed_kmh, 1.0, 200.0)
    _check("grade (%)", grade_percent, -20.0, 20.0)
    v = speed_kmh / 3.6
    y = reaction_s + v / (2 * decel_mps2 + 2 * GRAVITY * grade_percent / 100.0)
    return min(max(y, YELLOW_MIN_S), YELLOW_MAX_S)


def red_clearance_s(speed_kmh: float, width_m: float, vehicle_length_m: float = 6.1) -> float:
    """ITE red clearance interval (s): time to clear the intersection width plus one vehicle length."""
    _check("approach speed (km/h)", speed_kmh, 1.0, 200.0)
    _check("intersection width (m)", width_m, 0.0, 500.0)
    return (width_m + vehicle_length_m) / (speed_kmh / 3.6)


def ite_clearance(speed_kmh: float, grade_percent: float, width_m: float, vehicle_length_m: float = 6.1,
                  reaction_s: float = 1.0, decel_mps2: float = 3.05) -> Clearance:
    """Yellow and red clearance, rounded up to 0.1 s (a controller never times less than the formula)."""
    y = yellow_change_s(speed_kmh, grade_percent, reaction_s, decel_mps2)
    r = red_clearance_s(speed_kmh, width_m, vehicle_length_m)
    return Clearance(math.ceil(y * 10 - 1e-9) / 10, math.ceil(r * 10 - 1e-9) / 10)


def pedestrian_clearance_s(crossing_length_m: float, walking_speed_mps: float = 1.07) -> float:
    """Flashing DON'T WALK time (s) for a crossing of the given length."""
    _check("crossing length (m)", crossing_length_m, 0.0, 200.0)
    _check("walking speed (m/s)", walking_speed_mps, 0.3, 3.0)
    return math.ceil(crossing_length_m / walking_speed_mps * 10 - 1e-9) / 10
