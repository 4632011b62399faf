"""Reconciliation: the staged rows of each export (raw text kept) and each run's findings.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _money() -> sa.types.TypeEngine:
    return sa.Numeric(18, 2) if op.get_bind().dialect.name == "postgresql" else sa.BigInteger()


def upgrade() -> None:
    op.create_table(
        "reconciliation_rows",
        sa.Column("run_id", sa.Uuid, primary_key=True),
        sa.Column("line", sa.Integer, primary_key=True),
        sa.Column("invoice_key", sa.String, nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("amount", _money(), nullable=False),
        sa.Column("tax", _money(), nullable=False),
        sa.Column("total", _money(), nullable=False),
        sa.Column("seller_code", sa.String, nullable=True),
        sa.Column("buyer_code", sa.String, nullable=True),
        sa.Column("platform_status", sa.String, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
    )
    op.create_index(
        "reconciliation_rows_key", "reconciliation_rows", ["run_id", "invoice_key", "line"]
    )
    op.create_table(
        "reconciliation_findings",
        sa.Column("run_id", sa.Uuid, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.String, nullable=False),
        sa.Column("class", sa.String, nullable=False),
        sa.Column("line", sa.Integer, nullable=True),
        sa.Column("invoice_key", sa.String, nullable=True),
        sa.Column("invoice_id", sa.Uuid, nullable=True),
        sa.Column("differences", sa.Text, nullable=False),
        sa.Column("event", sa.String, nullable=True),
        sa.Column("position", sa.BigInteger, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_index(
        "reconciliation_findings_class", "reconciliation_findings", ["tenant_id", "class"]
    )


def downgrade() -> None:
    op.drop_table("reconciliation_findings")
    op.drop_table("reconciliation_rows")
