"""`healthflow dlq` lists dead letters from the configured bus: the embedded store or the DLQ."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from healthflow.ids import uuid7
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.events import CloudEvent
from healthflow.ports import DeadLetter, Delivery
from healthflow.storage import migrations
from tests.conftest import eventually
from tests.integration.conftest import RABBIT_URL, Rabbit, migrated

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def an_event() -> CloudEvent:
    return CloudEvent(str(uuid7(T0)), "/tests", "PatientCreated", T0, str(uuid7(T0)), {})


def run_dlq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "healthflow", "dlq", *args],
        env={**clean, **env, "COLUMNS": "400"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_the_embedded_dead_letters_are_listed(tmp_path: Path) -> None:
    db = await migrated(f"sqlite+aiosqlite:///{tmp_path}/patients.db", migrations.PATIENTS)
    event = an_event()
    await SqlDeadLetterStore(db).add(DeadLetter("analytics", event, "KeyError: ward", 3, T0))
    await db.dispose()

    listed = run_dlq({"HEALTHFLOW_DATA_DIR": str(tmp_path)})

    assert listed.returncode == 0, listed.stderr
    assert event.id in listed.stdout
    assert "KeyError: ward" in listed.stdout
    assert event.id not in run_dlq({"HEALTHFLOW_DATA_DIR": str(tmp_path)}, "--group", "x").stdout


async def test_the_rabbitmq_dlq_is_listed_and_kept(rabbit: Rabbit, tmp_path: Path) -> None:
    bus = rabbit.bus(groups=["analytics"], retry_delays_s=())

    async def fails(delivery: Delivery) -> None:
        await delivery.reject("ValueError: bad snapshot")

    bus.subscribe("analytics", fails)
    await bus.start()
    event = an_event()
    try:
        await bus.publish([event])

        async def dead() -> bool:
            return len(await bus.dead_letters(group=None, limit=5)) == 1

        await eventually(dead)
        env = {
            "HEALTHFLOW_DATA_DIR": str(tmp_path),
            "HEALTHFLOW_BROKER_URL": RABBIT_URL,
            "HEALTHFLOW_BROKER_EXCHANGE": rabbit.exchange,
        }
        listed = run_dlq(env)

        assert listed.returncode == 0, listed.stderr
        assert event.id in listed.stdout
        assert "ValueError: bad snapshot" in listed.stdout
        assert len(await bus.dead_letters(group=None, limit=5)) == 1
    finally:
        await bus.close()
