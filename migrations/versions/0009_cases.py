"""cases: re-entry applications and complaints with their next deadlines, and its tracking.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "cases",
        sa.Column("case_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("case_type", sa.String, nullable=False),
        sa.Column("number", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("invoice_ids", sa.Text, nullable=False),
        sa.Column("review_round", sa.Integer, nullable=False),
        sa.Column("review_due_at", tz, nullable=True),
        sa.Column("reply_due_on", sa.Date, nullable=True),
        sa.Column("reminder_days", sa.Integer, nullable=False),
        sa.Column("reply_remind_at", tz, nullable=True),
        sa.Column("reply_due_at", tz, nullable=True),
        sa.Column("escalations", sa.Text, nullable=False),
        sa.Column("escalation_index", sa.Integer, nullable=True),
        sa.Column("escalation_due_at", tz, nullable=True),
        sa.Column("flagged", sa.Integer, nullable=False),
        sa.Column("opened_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.create_index("cases_tenant_status", "cases", ["tenant_id", "case_type", "status"])
    op.create_index("cases_number", "cases", ["tenant_id", "number"], unique=True)
    op.create_table(
        "cases_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO cases_tracking (application_name, notification_id) VALUES ('__migration__', 1)"
    )


def downgrade() -> None:
    op.drop_table("cases_tracking")
    op.drop_table("cases")
