"""An index on the alerts' opening time, so the dashboard's alerts per day reads only the window.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_alerts_opened_at", "alerts", ["opened_at", "severity"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_alerts_opened_at", table_name="alerts")
