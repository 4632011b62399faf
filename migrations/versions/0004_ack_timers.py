"""Acknowledgement timers: ack_timers, the tenants' policies and maintenance windows as the
timers projection sees them, and its tracking table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ack_timers",
        sa.Column("invoice_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_seconds", sa.Integer, nullable=True),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ack_timers_due", "ack_timers", ["due_at"])
    op.create_index("ack_timers_tenant_due", "ack_timers", ["tenant_id", "due_at"])
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_id", sa.String, primary_key=True),
        sa.Column("policy_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("ack_window_seconds", sa.Integer, nullable=False),
    )
    op.create_table(
        "maintenance_windows",
        sa.Column("window_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index("ix_maintenance_windows_tenant_id", "maintenance_windows", ["tenant_id"])
    op.create_table(
        "ack_timers_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO ack_timers_tracking (application_name, notification_id) "
        "VALUES ('__migration__', 1)"
    )


def downgrade() -> None:
    op.drop_table("ack_timers_tracking")
    op.drop_table("maintenance_windows")
    op.drop_table("tenant_policies")
    op.drop_table("ack_timers")
