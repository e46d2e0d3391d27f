"""Device telemetry intake (issue 4): devices, the telemetry outbox, the quarantine.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # data dirs from before this revision had these tables made at start-up: keep them as they are
    if sa.inspect(op.get_bind()).has_table("devices"):
        return
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("key_hash", sa.String(length=200), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("device_id"),
    )
    op.create_index(op.f("ix_devices_patient_id"), "devices", ["patient_id"], unique=False)
    op.create_table(
        "telemetry_outbox",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("device_id", "ts", name="uq_telemetry_outbox_device_ts"),
        sa.UniqueConstraint("event_id"),
    )
    op.create_index(
        "ix_telemetry_outbox_unpublished",
        "telemetry_outbox",
        ["seq"],
        unique=False,
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "telemetry_quarantine",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_telemetry_quarantine_device_id"),
        "telemetry_quarantine",
        ["device_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_telemetry_quarantine_reason"), "telemetry_quarantine", ["reason"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_telemetry_quarantine_reason"), table_name="telemetry_quarantine")
    op.drop_index(op.f("ix_telemetry_quarantine_device_id"), table_name="telemetry_quarantine")
    op.drop_table("telemetry_quarantine")
    op.drop_index(
        "ix_telemetry_outbox_unpublished",
        table_name="telemetry_outbox",
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("telemetry_outbox")
    op.drop_index(op.f("ix_devices_patient_id"), table_name="devices")
    op.drop_table("devices")
