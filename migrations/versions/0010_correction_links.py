"""Correction links on invoice_status: the invoice a red-letter invoice reverses, the reversed
invoice a reissued one replaces, and (on the original) which invoice replaced it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

COLUMNS = ("reverses_key", "replaces_key", "replaced_by")


def upgrade() -> None:
    with op.batch_alter_table("invoice_status") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.String, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invoice_status") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
