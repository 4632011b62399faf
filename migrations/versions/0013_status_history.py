"""invoice_status_history: statuses with validity intervals (by recorded_at), and tracking.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "invoice_status_history",
        sa.Column("invoice_id", sa.Uuid, primary_key=True),
        sa.Column("from_position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("to_position", sa.BigInteger, nullable=True),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "status_history_tenant_time",
        "invoice_status_history",
        ["tenant_id", "valid_from", "valid_to"],
    )
    op.create_table(
        "status_history_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO status_history_tracking (application_name, notification_id) "
        "VALUES ('__migration__', 1)"
    )


def downgrade() -> None:
    op.drop_table("status_history_tracking")
    op.drop_table("invoice_status_history")
