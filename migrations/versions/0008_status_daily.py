"""status_daily: how many invoices entered each status on each Beijing day (for trends).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "status_daily",
        sa.Column("tenant_id", sa.String, primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("status", sa.String, primary_key=True),
        sa.Column("entered", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("status_daily")
