"""streams: which tenant each event stream (aggregate) belongs to, for tenant-scoped exports.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "streams",
        sa.Column("stream_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("first_topic", sa.String, nullable=False),
    )
    op.create_index("ix_streams_tenant_id", "streams", ["tenant_id"])
    op.create_table(
        "streams_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO streams_tracking (application_name, notification_id) "
        "VALUES ('__migration__', 1)"
    )


def downgrade() -> None:
    op.drop_table("streams_tracking")
    op.drop_table("streams")
