"""NEWS2, the Royal College of Physicians' National Early Warning Score 2 (2017): pure scoring.

Bands follow the RCP NEWS2 chart (chart 1, "The NEWS scoring system"), with SpO2 scale 1 for
most patients and scale 2 for patients with hypercapnic respiratory failure. Measurements are
rounded as a clinician writes them on the chart (whole numbers; temperature to 0.1 °C, half up)
before the bands apply, so a value can never fall between two bands.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from healthflow.vitals.domain import Consciousness

PARAMETERS = (
    "resp_rate",
    "spo2",
    "air_or_oxygen",
    "systolic_bp",
    "heart_rate",
    "consciousness",
    "temperature",
)
# Total at or above which the clinical risk is medium and high (RCP chart 2).
MEDIUM_TOTAL = 5
HIGH_TOTAL = 7
# A single parameter scoring this much alone makes the risk at least low-medium.
RED_SCORE = 3


class Risk(enum.StrEnum):
    LOW = "low"
    LOW_MEDIUM = "low_medium"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True)
class Observations:
    """The measurements NEWS2 scores; None means not measured."""

    resp_rate: float | None = None
    spo2: float | None = None
    on_oxygen: bool | None = None
    systolic_bp: float | None = None
    heart_rate: float | None = None
    consciousness: Consciousness | None = None
    temperature: float | None = None
    spo2_scale: int = 1


@dataclass(frozen=True)
class Score:
    total: int
    sub_scores: dict[str, int]
    risk: Risk
    missing: tuple[str, ...]


def _whole(value: float) -> int:
    """Round half away from zero, as a clinician reads a chart (20.5/min counts as 21).

    Exact without Decimal: `magnitude - floor(magnitude)` is computed exactly for any float a
    sensor sends, and a float whose shortest decimal form ends in .5 is exactly x.5.
    """
    magnitude = abs(value)
    whole = math.floor(magnitude)
    rounded = whole + 1 if magnitude - whole >= 0.5 else whole
    return -rounded if value < 0 else rounded


# Temperature bands on the value rounded to 0.1 °C half up: at or below 35.0 is below 35.05
# before rounding, and so on. Comparing floats against these halves gives exactly the Decimal
# rule's answer (a float's shortest decimal form keeps the floats' order), without a Decimal.
_TEMPERATURE_BANDS = ((35.05, 3), (36.05, 1), (38.05, 0), (39.05, 1))


def resp_rate_score(per_minute: float) -> int:
    rate = _whole(per_minute)
    if rate <= 8:
        return 3
    if rate <= 11:
        return 1
    if rate <= 20:
        return 0
    if rate <= 24:
        return 2
    return 3


def spo2_scale1_score(percent: float) -> int:
    spo2 = _whole(percent)
    if spo2 <= 91:
        return 3
    if spo2 <= 93:
        return 2
    if spo2 <= 95:
        return 1
    return 0


def spo2_scale2_score(percent: float, *, on_oxygen: bool) -> int:
    """Scale 2: 88-92% is the target; above 92% scores only on oxygen, where it means too much."""
    spo2 = _whole(percent)
    if spo2 <= 83:
        return 3
    if spo2 <= 85:
        return 2
    if spo2 <= 87:
        return 1
    if spo2 <= 92 or not on_oxygen:
        return 0
    if spo2 <= 94:
        return 1
    if spo2 <= 96:
        return 2
    return 3


def air_or_oxygen_score(on_oxygen: bool) -> int:
    return 2 if on_oxygen else 0


def systolic_bp_score(mmhg: float) -> int:
    pressure = _whole(mmhg)
    if pressure <= 90:
        return 3
    if pressure <= 100:
        return 2
    if pressure <= 110:
        return 1
    if pressure <= 219:
        return 0
    return 3


def heart_rate_score(bpm: float) -> int:
    rate = _whole(bpm)
    if rate <= 40:
        return 3
    if rate <= 50:
        return 1
    if rate <= 90:
        return 0
    if rate <= 110:
        return 1
    if rate <= 130:
        return 2
    return 3


def consciousness_score(level: Consciousness) -> int:
    return 0 if level is Consciousness.ALERT else 3


def temperature_score(celsius: float) -> int:
    for below, points in _TEMPERATURE_BANDS:
        if celsius < below:
            return points
    return 2


def risk_of(total: int, sub_scores: dict[str, int]) -> Risk:
    """RCP chart 2: 7+ high, 5-6 medium, a single red score (3) low-medium, else low."""
    if total >= HIGH_TOTAL:
        return Risk.HIGH
    if total >= MEDIUM_TOTAL:
        return Risk.MEDIUM
    if any(s >= RED_SCORE for s in sub_scores.values()):
        return Risk.LOW_MEDIUM
    return Risk.LOW


def score(obs: Observations) -> Score:
    """Score every measured parameter; parameters not measured are listed as missing."""
    if obs.spo2_scale not in (1, 2):
        raise ValueError("spo2_scale must be 1 or 2")
    subs: dict[str, int] = {}
    if obs.resp_rate is not None:
        subs["resp_rate"] = resp_rate_score(obs.resp_rate)
    if obs.spo2 is not None:
        subs["spo2"] = (
            spo2_scale2_score(obs.spo2, on_oxygen=bool(obs.on_oxygen))
            if obs.spo2_scale == 2
            else spo2_scale1_score(obs.spo2)
        )
    if obs.on_oxygen is not None:
        subs["air_or_oxygen"] = air_or_oxygen_score(obs.on_oxygen)
    if obs.systolic_bp is not None:
        subs["systolic_bp"] = systolic_bp_score(obs.systolic_bp)
    if obs.heart_rate is not None:
        subs["heart_rate"] = heart_rate_score(obs.heart_rate)
    if obs.consciousness is not None:
        subs["consciousness"] = consciousness_score(obs.consciousness)
    if obs.temperature is not None:
        subs["temperature"] = temperature_score(obs.temperature)
    total = sum(subs.values())
    missing = tuple(p for p in PARAMETERS if p not in subs)
    return Score(total, subs, risk_of(total, subs), missing)
