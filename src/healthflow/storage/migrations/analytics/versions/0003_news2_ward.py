"""The ward next to each patient's NEWS2 state, so a ward board can ask for its patients' scores.

Revision ID: 0003
Revises: 0002

Existing states get the ward of the patient's newest alert where there is one; the others get it
with their next reading (until then they are listed only when no ward is asked for).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("patient_vitals") as batch:
        batch.add_column(sa.Column("ward", sa.String(length=50), nullable=True))
    op.create_index(
        "ix_patient_vitals_ward", "patient_vitals", ["ward", "patient_id"], unique=False
    )
    op.execute(
        "UPDATE patient_vitals SET ward = ("
        " SELECT alerts.ward FROM alerts WHERE alerts.patient_id = patient_vitals.patient_id"
        " ORDER BY alerts.opened_at DESC LIMIT 1)"
    )


def downgrade() -> None:
    op.drop_index("ix_patient_vitals_ward", table_name="patient_vitals")
    with op.batch_alter_table("patient_vitals") as batch:
        batch.drop_column("ward")
