"""Alerts: webhook subscriptions per tenant, the delivery outbox, and its tracking table.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_subscriptions",
        sa.Column("subscription_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, sa.ForeignKey("tenants.tenant_id"), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.String, nullable=False),
        sa.Column("events", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhook_subscriptions_tenant_id", "webhook_subscriptions", ["tenant_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("delivery_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("subscription_id", sa.Uuid, nullable=False),
        sa.Column("event_type", sa.String, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("webhook_deliveries_tenant", "webhook_deliveries", ["tenant_id", "status"])
    op.create_table(
        "alerts_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO alerts_tracking (application_name, notification_id) "
        "VALUES ('__migration__', 1)"
    )


def downgrade() -> None:
    op.drop_table("alerts_tracking")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
