"""Checkpoint anchors: RFC 3161 timestamp tokens and witness cosignatures kept beside each
checkpoint, and the record of checkpoints announced to tenants. All three refuse UPDATE and
DELETE (triggers on both stores), like the seal's tables.

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

GUARDED = ("checkpoint_timestamps", "checkpoint_cosignatures", "checkpoint_announcements")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.create_table(
        "checkpoint_timestamps",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("tsa_url", sa.String, primary_key=True),
        sa.Column("token", sa.Text, nullable=False),
        sa.Column("gen_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "checkpoint_cosignatures",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("witness", sa.String, primary_key=True),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("cosigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "checkpoint_announcements",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
    )
    for table in GUARDED:
        if _pg():  # fapiao_append_only() is revision 0017's
            op.execute(
                f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                    FOR EACH ROW EXECUTE FUNCTION fapiao_append_only()"""
            )
            op.execute(
                f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                    FOR EACH STATEMENT EXECUTE FUNCTION fapiao_append_only()"""
            )
        else:
            op.execute(
                f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
                    BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END"""
            )
            op.execute(
                f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                    BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END"""
            )


def downgrade() -> None:
    for table in GUARDED:
        if _pg():
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        else:
            op.execute(f"DROP TRIGGER {table}_no_update")
            op.execute(f"DROP TRIGGER {table}_no_delete")
        op.drop_table(table)
