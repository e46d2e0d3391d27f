"""How many workers score readings in the one-process platform: one per SQLite writer."""

from __future__ import annotations

from collections.abc import Callable

from healthflow.composition.adapters import database
from healthflow.composition.platform import build_platform, vitals_workers
from healthflow.settings import Settings

POSTGRES = "postgresql+asyncpg://healthflow@127.0.0.1:5432/healthflow"


async def test_the_embedded_platform_scores_readings_in_one_worker(
    make_settings: Callable[..., Settings],
) -> None:
    # SQLite has one writer: a second worker's batch would only wait for the first one's
    platform = build_platform(make_settings(worker_count=4, worker_batch_size=50))
    try:
        assert platform.telemetry is not None
        # as many readings in hand as the four workers would have held together
        assert (platform.telemetry.pool.workers, platform.telemetry.pool.max_batch) == (1, 200)
        assert (platform.pool.workers, platform.pool.max_batch) == (4, 50)  # analytics: as set
    finally:
        await platform.patients_db.dispose()
        await platform.analytics_db.dispose()


async def test_a_server_database_gets_every_worker_and_a_set_count_wins(
    make_settings: Callable[..., Settings],
) -> None:
    automatic = make_settings(worker_count=6, worker_batch_size=10)
    chosen = make_settings(worker_count=6, worker_batch_size=10, vitals_worker_count=3)
    postgres = database(automatic, POSTGRES)  # no connection is opened to count
    sqlite = database(automatic, automatic.analytics_url)
    try:
        assert vitals_workers(automatic, postgres) == (6, 10)
        assert vitals_workers(automatic, sqlite) == (1, 60)
        assert vitals_workers(chosen, sqlite) == (3, 10)
        assert vitals_workers(chosen, postgres) == (3, 10)
    finally:
        await postgres.dispose()
        await sqlite.dispose()
