"""Idempotent webhook subscriptions, status_daily derived from facts, and a readiness probe
row (/readyz proves a write commits by updating it).

A subscription made with an Idempotency-Key takes its id from the tenant and the key (so a
repeat collides on the primary key in the same insert) and keeps the request's fingerprint, so
the same key with another body is refused.

status_daily is now counted from `status_entries` (one row per invoice and position that entered
a status), so applying a batch twice cannot double it. The entries of the past are not known to
this migration: the invoice_status projection is reset and rebuilt from the events by its
worker (its view, status_daily and tracking row are emptied).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("request_fingerprint", sa.String(), nullable=True))
    op.create_table(
        "status_entries",
        sa.Column("invoice_id", sa.Uuid(), primary_key=True),
        sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("tenant_id", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
    )
    probe = op.create_table(
        "readiness_probe",
        sa.Column("probe_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(probe, [{"probe_id": 1, "checked_at": None}])
    op.create_index("status_entries_cell", "status_entries", ["tenant_id", "day", "status"])
    # rebuilt by the worker from the events, now with its entries
    for table in ("invoice_status", "status_daily", "invoice_status_tracking"):
        if sa.inspect(op.get_bind()).has_table(table):
            op.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names


def downgrade() -> None:
    op.drop_table("readiness_probe")
    op.drop_index("status_entries_cell", table_name="status_entries")
    op.drop_table("status_entries")
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("request_fingerprint")
