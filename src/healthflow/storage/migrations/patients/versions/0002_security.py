"""Security (issue 6): PHI columns hold ciphertext, MRN unique by blind index, audit trail.

Rows written before this revision stay readable (key_id NULL marks them plaintext) and are
sealed under the active key by the next `healthflow serve` start (SqlPatientStore.reencrypt_all):
a migration cannot encrypt, it has no keys.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None

# names SQLite's unnamed constraints while a batch rebuilds the table
NAMING = {"uq": "uq_%(table_name)s_%(column_0_name)s"}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("patients", naming_convention=NAMING) as batch:
        batch.drop_constraint("patients_mrn_key" if postgres else "uq_patients_mrn", type_="unique")
        for column, old in (
            ("mrn", sa.String(length=32)),
            ("given_name", sa.String(length=100)),
            ("family_name", sa.String(length=100)),
        ):
            batch.alter_column(column, type_=sa.Text(), existing_type=old, existing_nullable=False)
        batch.alter_column(
            "birth_date",
            type_=sa.Text(),
            existing_type=sa.Date(),
            existing_nullable=False,
            postgresql_using="birth_date::text",
        )
        batch.add_column(sa.Column("mrn_index", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch.create_unique_constraint("uq_patients_mrn_index", ["mrn_index"])
        batch.create_index("ix_patients_key_id", ["key_id"], unique=False)
    with op.batch_alter_table("patient_events") as batch:
        batch.add_column(sa.Column("key_id", sa.String(length=16), nullable=True))
        batch.create_index("ix_patient_events_key_id", ["key_id"], unique=False)
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=50), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=50), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq"),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_audit_resource", "audit_records", ["resource_id", "seq"], unique=False)
    op.create_index("ix_audit_subject", "audit_records", ["subject", "seq"], unique=False)
    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    # the audit trail is kept on purpose: a downgrade must not destroy audit evidence
    raise NotImplementedError("0002 (encryption, audit trail) cannot be downgraded")
