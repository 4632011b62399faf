"""The Merkle log: one leaf per event in log order, signed checkpoints, the sealer's tracking.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merkle_leaves",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False, unique=True),
        sa.Column("stream_id", sa.String, nullable=False),
        sa.Column("stream_version", sa.BigInteger, nullable=False),
        sa.Column("leaf_hash", sa.String, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String, nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_name", sa.String, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "seal_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO seal_tracking (application_name, notification_id) VALUES ('__migration__', 1)"
    )


def downgrade() -> None:
    op.drop_table("seal_tracking")
    op.drop_table("checkpoints")
    op.drop_table("merkle_leaves")
