"""From a stream of partial readings to a NEWS2 assessment: carry recent values forward.

Pure: the caller loads the patient's vitals state, calls `assess`, and stores what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from healthflow.vitals import news2
from healthflow.vitals.domain import Consciousness, Reading
from healthflow.vitals.news2 import Observations, Risk

# A parameter missing from a reading is taken from the last 15 minutes (issue 4); older values
# describe a patient who may have changed since, so they count as missing instead.
CARRY_FORWARD = timedelta(minutes=15)
# Reading field -> NEWS2 parameter it feeds.
SCORED_FIELDS = {
    "resp_rate": "resp_rate",
    "spo2": "spo2",
    "on_oxygen": "air_or_oxygen",
    "systolic_bp": "systolic_bp",
    "heart_rate": "heart_rate",
    "consciousness": "consciousness",
    "temperature": "temperature",
}

Value = float | str | bool


@dataclass(frozen=True)
class Assessment:
    """One NEWS2 result for a patient at `assessed_at` (the reading's time)."""

    total: int
    risk: Risk
    sub_scores: dict[str, int]
    carried_forward: tuple[str, ...]
    missing: tuple[str, ...]
    assessed_at: datetime
    spo2_scale: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "risk": self.risk.value,
            "sub_scores": dict(self.sub_scores),
            "carried_forward": list(self.carried_forward),
            "missing": list(self.missing),
            "assessed_at": self.assessed_at.isoformat(),
            "spo2_scale": self.spo2_scale,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Assessment:
        return cls(
            total=int(raw["total"]),
            risk=Risk(raw["risk"]),
            sub_scores={str(k): int(v) for k, v in raw["sub_scores"].items()},
            carried_forward=tuple(raw["carried_forward"]),
            missing=tuple(raw["missing"]),
            assessed_at=datetime.fromisoformat(raw["assessed_at"]),
            spo2_scale=int(raw["spo2_scale"]),
        )


@dataclass(frozen=True)
class PatientVitals:
    """What is remembered per patient between readings."""

    latest: dict[str, tuple[Value, datetime]]
    spo2_scale: int = 1
    assessment: Assessment | None = None


def assess(
    state: PatientVitals | None, reading: Reading
) -> tuple[PatientVitals, Assessment | None]:
    """The new state and the reading's assessment; None for a reading older than the last one.

    A late reading (a device that buffered while offline) is kept in the series by the caller
    but never rescored, so a patient's score and alerts never move backwards in time.
    """
    state = state or PatientVitals(latest={})
    if state.assessment is not None and reading.ts < state.assessment.assessed_at:
        return state, None
    measured = reading.measurements()
    latest = dict(state.latest)
    for name, value in measured.items():
        latest[name] = (value, reading.ts)
    scale = reading.spo2_scale or state.spo2_scale
    values: dict[str, Value] = {}
    carried: list[str] = []
    oldest = reading.ts - CARRY_FORWARD
    for name, parameter in SCORED_FIELDS.items():
        if name in measured:
            values[name] = measured[name]
        elif name in latest and latest[name][1] >= oldest:
            values[name] = latest[name][0]
            carried.append(parameter)
    result = news2.score(_observations(values, scale))
    assessment = Assessment(
        total=result.total,
        risk=result.risk,
        sub_scores=result.sub_scores,
        carried_forward=tuple(carried),
        missing=result.missing,
        assessed_at=reading.ts,
        spo2_scale=scale,
    )
    # every field given: cheaper than dataclasses.replace, which inspects the fields each call
    return PatientVitals(latest, scale, assessment), assessment


def _number(value: Value | None) -> float | None:
    # bool is an int: a stray true/false is no measurement
    return float(value) if type(value) is float or type(value) is int else None


def _observations(values: dict[str, Value], scale: int) -> Observations:
    level = values.get("consciousness")
    oxygen = values.get("on_oxygen")
    return Observations(
        resp_rate=_number(values.get("resp_rate")),
        spo2=_number(values.get("spo2")),
        on_oxygen=oxygen if isinstance(oxygen, bool) else None,
        systolic_bp=_number(values.get("systolic_bp")),
        heart_rate=_number(values.get("heart_rate")),
        consciousness=Consciousness(level) if isinstance(level, str) else None,
        temperature=_number(values.get("temperature")),
        spo2_scale=scale,
    )
