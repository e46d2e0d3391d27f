"""Patient use cases: register, move through the stay, read. Talks to ports only."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import structlog

from healthflow.ids import uuid7
from healthflow.messaging.events import CloudEvent
from healthflow.patients import events
from healthflow.patients.domain import (
    NewPatient,
    Patient,
    PatientChanged,
    PatientNotFound,
    Status,
)
from healthflow.ports import Clock, Hub, PatientStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Page:
    items: list[Patient]
    next_after: UUID | None


class PatientService:
    def __init__(self, store: PatientStore, hub: Hub, clock: Clock) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock

    async def register(self, new: NewPatient) -> Patient:
        now = self._clock.now()
        patient_id = uuid7(now)
        mrn = new.mrn if new.mrn is not None else generated_mrn(patient_id)
        patient = Patient.register(new, patient_id=patient_id, mrn=mrn, at=now)
        event = events.created(patient)
        await self._store.add(patient, [event])
        await self._push(event)
        return patient

    async def change_status(
        self,
        patient_id: UUID,
        status: Status,
        *,
        reason: str | None,
        source: str | None = None,
        expected_version: int | None = None,
    ) -> Patient:
        current = await self.get(patient_id)
        if expected_version is not None and expected_version != current.version:
            raise PatientChanged(patient_id, expected_version, current.version)
        changed, change = current.change_status(
            status, reason=reason, source=source, at=self._clock.now()
        )
        event = events.status_changed(changed, change)
        await self._store.save(changed, expected_version=current.version, events=[event])
        await self._push(event)
        return changed

    async def mark_critical(
        self, patient_id: UUID, *, reason: str, source: str, alert_id: UUID | None = None
    ) -> Patient:
        """Put a patient in critical; idempotent: a patient already critical is left as is, and
        with an `alert_id` the move happens at most once per alert, so a redelivered reading
        cannot put back into critical a patient a clinician has since moved on."""
        current = await self.get(patient_id)
        if current.status is Status.CRITICAL:
            return current
        if alert_id is not None and await self._moved_for(patient_id, alert_id):
            return current
        changed, change = current.change_status(
            Status.CRITICAL, reason=reason, source=source, at=self._clock.now()
        )
        event = events.status_changed(changed, change, alert_id=alert_id)
        await self._store.save(changed, expected_version=current.version, events=[event])
        await self._push(event)
        return changed

    async def _moved_for(self, patient_id: UUID, alert_id: UUID) -> bool:
        # the patient's own history is short, and a critical move is rare: a scan is enough
        return any(
            e.type == events.PATIENT_CRITICAL and e.data.get("alert_id") == str(alert_id)
            for e in await self._store.history(patient_id)
        )

    async def ward(self, patient_id: UUID) -> str:
        """The patient's ward without decrypting the record; raises PatientNotFound."""
        ward = await self._store.ward_of(patient_id)
        if ward is None:  # a read replica may lag behind a registration just made
            ward = (await self.get(patient_id)).ward
        return ward

    async def get(self, patient_id: UUID) -> Patient:
        patient = await self._store.get(patient_id)
        if patient is None:
            raise PatientNotFound(patient_id)
        return patient

    async def page(
        self, *, status: Status | None, ward: str | None, after: UUID | None, limit: int
    ) -> Page:
        # one row more than asked tells whether another page exists without a count query
        rows = await self._store.page(status=status, ward=ward, after=after, limit=limit + 1)
        items = rows[:limit]
        return Page(items, items[-1].id if len(rows) > limit else None)

    async def history(self, patient_id: UUID) -> list[CloudEvent]:
        await self.get(patient_id)
        return await self._store.history(patient_id)

    async def _push(self, event: CloudEvent) -> None:
        # Live push is best effort after commit: the outbox, not the hub, carries the guarantee.
        try:
            await self._hub.broadcast(event.type, event.data, event.time)
        except Exception:
            log.exception("hub_broadcast_failed", event_type=event.type, event_id=event.id)


def generated_mrn(patient_id: UUID) -> str:
    """An MRN for a patient who arrives without one, from the id's 48 random low bits."""
    return f"HF{patient_id.hex[-12:].upper()}"
