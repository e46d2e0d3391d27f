"""The worker's handling of one accepted reading: assessed where the vitals series lives, then,
when its alert became critical, the patient moved to critical where the patient lives.

The same code runs in `--role all` (both ports in process) and in the worker role (both over
HTTP, docs/telemetry.md). Any failure propagates, so the delivery is retried by the bus and
never acknowledged before both steps are done; a redelivery repeats only what is idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import structlog

from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import PatientNotFound, TransitionRefused
from healthflow.vitals import events, metrics
from healthflow.vitals.ports import Assessor, CriticalCall, CriticalRefused, CriticalStatus

log = structlog.get_logger(__name__)
CRITICAL_SOURCE = "news2"


class Escalation:
    """VitalSignsRecorded → assessment → (once per critical alert) patient critical."""

    def __init__(self, assessor: Assessor, critical: CriticalStatus) -> None:
        self._assessor = assessor
        self._critical = critical

    async def handle(self, event: CloudEvent) -> None:
        """The vitals worker's handler; other event types belong to other consumers."""
        await self.handle_batch([event])

    async def handle_batch(self, batch: Sequence[CloudEvent]) -> None:
        """What a worker's queue holds: assessed together, then each critical move in order."""
        readings = [
            events.recorded_from_event(e) for e in batch if e.type == events.VITAL_SIGNS_RECORDED
        ]
        if not readings:
            return
        assessed = await self._assessor.assess_many(readings)
        for recorded, result in zip(readings, assessed, strict=True):
            if result.critical is not None:
                await self._move(recorded.patient_id, result.critical)

    async def _move(self, patient_id: UUID, call: CriticalCall) -> None:
        try:
            await self._critical.mark_critical(
                patient_id, reason=call.reason, source=CRITICAL_SOURCE, alert_id=call.alert_id
            )
        except (TransitionRefused, PatientNotFound, CriticalRefused) as exc:
            # e.g. a discharged patient's device still sending: the alert stands, the status can't
            metrics.CRITICAL_REFUSED.inc()
            log.warning("critical_status_refused", patient_id=str(patient_id), error=str(exc))
