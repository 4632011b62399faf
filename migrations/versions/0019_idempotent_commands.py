"""Idempotent webhook subscriptions: a subscription made with an Idempotency-Key takes its id
from the tenant and the key (so a repeat collides on the primary key in the same insert) and
keeps the request's fingerprint, so the same key with another body is refused.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("request_fingerprint", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("request_fingerprint")
