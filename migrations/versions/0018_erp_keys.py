"""API keys say whether they are an ERP's shared key (`fapiao keys create --acts-for-users`):
only such a key may name the person it acts for (X-Actor-User); every other key is itself the
person, for the record and for separation of duties. Existing keys are not ERP keys.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("acts_for_users", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("acts_for_users")
