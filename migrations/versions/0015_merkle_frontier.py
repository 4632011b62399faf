"""merkle_frontier: the tree's right edge (perfect subtrees), so a checkpoint's root costs
O(log n) instead of rereading every leaf. Filled by the sealer on its next batch.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "merkle_frontier",
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("merkle_frontier")
