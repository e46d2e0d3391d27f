"""Initial patients schema: patients, their event history (the outbox) and dead letters.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_name", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
    )
    op.create_index(
        op.f("ix_dead_letters_group_name"), "dead_letters", ["group_name"], unique=False
    )
    op.create_table(
        "patient_events",
        sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.Uuid(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index(
        "ix_patient_events_patient", "patient_events", ["patient_id", "seq"], unique=False
    )
    op.create_index(
        "ix_patient_events_unpublished",
        "patient_events",
        ["seq"],
        unique=False,
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.create_table(
        "patients",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("mrn", sa.String(length=32), nullable=False),
        sa.Column("given_name", sa.String(length=100), nullable=False),
        sa.Column("family_name", sa.String(length=100), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("sex", sa.String(length=16), nullable=False),
        sa.Column("ward", sa.String(length=50), nullable=False),
        sa.Column("bed", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mrn"),
    )
    op.create_index("ix_patients_status_id", "patients", ["status", "id"], unique=False)
    op.create_index("ix_patients_ward_id", "patients", ["ward", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_patients_ward_id", table_name="patients")
    op.drop_index("ix_patients_status_id", table_name="patients")
    op.drop_table("patients")
    op.drop_index(
        "ix_patient_events_unpublished",
        table_name="patient_events",
        sqlite_where=sa.text("published_at IS NULL"),
        postgresql_where=sa.text("published_at IS NULL"),
    )
    op.drop_index("ix_patient_events_patient", table_name="patient_events")
    op.drop_table("patient_events")
    op.drop_index(op.f("ix_dead_letters_group_name"), table_name="dead_letters")
    op.drop_table("dead_letters")
