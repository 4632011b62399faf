"""The invoice_status read model, its tracking table (the library's single-row shape with the
marker row) and the projections' dead-letter table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _money() -> sa.types.TypeEngine:
    # Exact on both: NUMERIC on PostgreSQL, integer cents on SQLite.
    return sa.Numeric(18, 2) if op.get_bind().dialect.name == "postgresql" else sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "invoice_status",
        sa.Column("invoice_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("invoice_key", sa.String, nullable=False),
        sa.Column("number", sa.String, nullable=False),
        sa.Column("code", sa.String, nullable=True),
        sa.Column("invoice_type", sa.String, nullable=False),
        sa.Column("direction", sa.String, nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("seller_code", sa.String, nullable=False),
        sa.Column("seller_name", sa.String, nullable=False),
        sa.Column("buyer_code", sa.String, nullable=True),
        sa.Column("buyer_name", sa.String, nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("tax", _money(), nullable=False),
        sa.Column("total", _money(), nullable=False),
        sa.Column("tax_rate", sa.String, nullable=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("submission_attempts", sa.Integer, nullable=False),
        sa.Column("last_failure_reason", sa.String, nullable=True),
        sa.Column("platform_ref", sa.String, nullable=True),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_late", sa.Integer, nullable=False),
        sa.Column("rejection_code", sa.String, nullable=True),
        sa.Column("rejection_message", sa.Text, nullable=True),
        sa.Column("missing_detected_by", sa.String, nullable=True),
        sa.Column("missing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reversed_amount", _money(), nullable=False),
        sa.Column("red_invoice_keys", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("last_event", sa.String, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "invoice_status_tenant_issued", "invoice_status", ["tenant_id", "issued_on", "invoice_id"]
    )
    op.create_index(
        "invoice_status_tenant_status", "invoice_status", ["tenant_id", "status", "issued_on"]
    )
    op.create_index(
        "invoice_status_tenant_key", "invoice_status", ["tenant_id", "invoice_key"], unique=True
    )
    op.create_table(
        "invoice_status_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    # Without this marker the library would treat the table as legacy and rename it.
    op.execute(
        "INSERT INTO invoice_status_tracking (application_name, notification_id) "
        "VALUES ('__migration__', 1)"
    )
    op.create_table(
        "projection_dead_letters",
        sa.Column("projection", sa.String, primary_key=True),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("originator_id", sa.String, nullable=False),
        sa.Column("originator_version", sa.BigInteger, nullable=False),
        sa.Column("topic", sa.String, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("projection_dead_letters")
    op.drop_table("invoice_status_tracking")
    op.drop_table("invoice_status")
