"""The worker's handling of a reading: assessed, then the patient moved to critical once per
alert; every failure that retrying may fix propagates, so the bus never acks it unprocessed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest

from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import PatientNotFound, Status, TransitionRefused
from healthflow.vitals import metrics
from healthflow.vitals.domain import Reading
from healthflow.vitals.escalation import CRITICAL_SOURCE, Escalation
from healthflow.vitals.events import RecordedReading, vital_signs_recorded
from healthflow.vitals.ports import Assessed, CriticalCall, CriticalRefused

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
PATIENT = uuid4()
ALERT = uuid4()


def reading_event(ward: str | None = "ICU") -> CloudEvent:
    reading = Reading(ts=T0, heart_rate=140.0)
    return vital_signs_recorded(RecordedReading(str(uuid4()), "mon-1", PATIENT, reading, T0, ward))


class Assessor:
    """Answers each reading with the next prepared answer, or raises it."""

    def __init__(self, *answers: Assessed | Exception) -> None:
        self.answers = list(answers)
        self.seen: list[RecordedReading] = []

    async def assess_many(self, batch: Sequence[RecordedReading]) -> list[Assessed]:
        results = []
        for recorded in batch:
            self.seen.append(recorded)
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            results.append(answer)
        return results


class Critical:
    """Records each move asked for; raises `error` instead when one is set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[UUID, dict[str, Any]]] = []

    async def mark_critical(
        self, patient_id: UUID, *, reason: str, source: str, alert_id: UUID | None = None
    ) -> None:
        self.calls.append((patient_id, {"reason": reason, "source": source, "alert_id": alert_id}))
        if self.error is not None:
            raise self.error


CRITICAL_CALL = CriticalCall(ALERT, "NEWS2 19 (high risk)")


async def test_a_reading_that_raises_no_critical_alert_changes_no_status() -> None:
    critical = Critical()
    await Escalation(Assessor(Assessed(True, None)), critical).handle(reading_event())
    assert critical.calls == []


async def test_a_critical_alert_moves_the_patient_keyed_by_the_alert() -> None:
    assessor, critical = Assessor(Assessed(True, CRITICAL_CALL)), Critical()

    await Escalation(assessor, critical).handle(reading_event())

    assert critical.calls == [
        (PATIENT, {"reason": "NEWS2 19 (high risk)", "source": CRITICAL_SOURCE, "alert_id": ALERT})
    ]
    assert assessor.seen[0].ward == "ICU"  # the ward the intake put in the event travels on


async def test_a_redelivered_reading_asks_for_the_same_move_again() -> None:
    # the first handling may have died after the assessment: the move is repeated, keyed by the
    # same alert, which the patients service makes happen once
    assessor = Assessor(Assessed(True, CRITICAL_CALL), Assessed(False, CRITICAL_CALL))
    critical = Critical()
    escalation = Escalation(assessor, critical)
    event = reading_event()

    await escalation.handle(event)
    await escalation.handle(event)

    assert [c[1]["alert_id"] for c in critical.calls] == [ALERT, ALERT]


@pytest.mark.parametrize(
    "refusal",
    [
        TransitionRefused(Status.DISCHARGED, Status.CRITICAL),
        PatientNotFound(PATIENT),
        CriticalRefused("patients answered 409: transition-refused"),
    ],
)
async def test_a_patient_who_cannot_become_critical_keeps_the_alert_and_is_counted(
    refusal: Exception,
) -> None:
    before = metrics.CRITICAL_REFUSED._value.get()

    await Escalation(Assessor(Assessed(True, CRITICAL_CALL)), Critical(refusal)).handle(
        reading_event()
    )

    assert metrics.CRITICAL_REFUSED._value.get() == before + 1


async def test_an_assessment_that_fails_propagates_and_moves_nobody() -> None:
    critical = Critical()
    with pytest.raises(ConnectionError):
        await Escalation(Assessor(ConnectionError("analytics down")), critical).handle(
            reading_event()
        )
    assert critical.calls == []


async def test_a_move_that_fails_for_another_reason_propagates_for_the_bus_to_retry() -> None:
    critical = Critical(ConnectionError("patients down"))
    with pytest.raises(ConnectionError):
        await Escalation(Assessor(Assessed(True, CRITICAL_CALL)), critical).handle(reading_event())


async def test_other_event_types_are_left_to_their_own_consumers() -> None:
    assessor = Assessor()
    other = CloudEvent(id="e1", source="/x", type="PatientCreated", time=T0, subject=str(PATIENT))
    await Escalation(assessor, Critical()).handle(other)
    assert assessor.seen == []


async def test_a_batch_moves_each_patient_whose_alert_became_critical_in_order() -> None:
    other, other_alert = uuid4(), uuid4()
    events = [reading_event(), reading_event()]
    second = RecordedReading(str(uuid4()), "mon-2", other, Reading(ts=T0, heart_rate=140.0), T0)
    events.append(vital_signs_recorded(second))
    assessor = Assessor(
        Assessed(True, CRITICAL_CALL),
        Assessed(True, None),
        Assessed(True, CriticalCall(other_alert, "r")),
    )
    critical = Critical()

    await Escalation(assessor, critical).handle_batch(events)

    assert [(p, c["alert_id"]) for p, c in critical.calls] == [
        (PATIENT, ALERT),
        (other, other_alert),
    ]
