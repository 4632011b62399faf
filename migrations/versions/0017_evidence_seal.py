"""The seal proves completeness and guards itself: leaves name their tenant, checkpoints commit to
every stream's head (a second tree), the frontier is kept per checkpoint so the next one can
be proven before it is signed, refusals are recorded, and the access log is filled from
sealed events. The merkle tables, checkpoints, seal incidents and the access log refuse UPDATE
and DELETE (triggers on both stores).

The leaf format changes (it adds the tenant), so the seal is rebuilt: the old leaves, frontier
and checkpoints are dropped and the sealer reseals every event from the start on its next run.
Checkpoints handed out before this revision do not verify against the new log.

Revision ID: 0017
Revises: 0015
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0015"
branch_labels = None
depends_on = None

GUARDED = ("merkle_leaves", "merkle_frontier", "checkpoints", "seal_incidents", "access_log")

PG_GUARD = [
    """CREATE FUNCTION fapiao_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    *(
        statement
        for table in GUARDED
        for statement in (
            f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION fapiao_append_only()""",
            f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                FOR EACH STATEMENT EXECUTE FUNCTION fapiao_append_only()""",
        )
    ),
]

SQLITE_GUARD = [
    statement
    for table in GUARDED
    for statement in (
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END""",
    )
]


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    op.drop_table("merkle_frontier")
    op.drop_table("checkpoints")
    op.drop_table("merkle_leaves")
    op.execute("DELETE FROM seal_tracking")
    op.execute("DELETE FROM projection_dead_letters WHERE projection = 'seal'")
    op.execute(
        "INSERT INTO seal_tracking (application_name, notification_id) VALUES ('__migration__', 1)"
    )
    op.create_table(
        "merkle_leaves",
        sa.Column("leaf_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False, unique=True),
        sa.Column("stream_id", sa.String, nullable=False),
        sa.Column("stream_version", sa.BigInteger, nullable=False),
        sa.Column("tenant_id", sa.String, nullable=True),
        sa.Column("leaf_hash", sa.String, nullable=False),
    )
    op.create_index("merkle_leaves_tenant", "merkle_leaves", ["tenant_id", "position"])
    op.create_table(
        "merkle_frontier",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String, nullable=False),
        sa.Column("heads_count", sa.BigInteger, nullable=False),
        sa.Column("heads_root", sa.String, nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("key_name", sa.String, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "seal_incidents",
        sa.Column("incident_id", sa.Uuid, primary_key=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_seal_incidents_detected_at", "seal_incidents", ["detected_at"])
    with op.batch_alter_table("access_log") as batch:
        batch.alter_column("key_id", existing_type=sa.String, nullable=True)
        batch.add_column(sa.Column("position", sa.BigInteger, nullable=True))
    op.create_index("access_log_position", "access_log", ["position"], unique=True)
    op.create_table(
        "access_log_tracking",
        sa.Column("application_name", sa.String, primary_key=True),
        sa.Column("notification_id", sa.BigInteger),
    )
    op.execute(
        "INSERT INTO access_log_tracking (application_name, notification_id) "
        "VALUES ('__migration__', 1)"
    )
    for statement in PG_GUARD if _pg() else SQLITE_GUARD:
        op.execute(statement)


def downgrade() -> None:
    if _pg():
        for table in GUARDED:
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION fapiao_append_only()")
    else:
        for table in GUARDED:
            op.execute(f"DROP TRIGGER {table}_no_update")
            op.execute(f"DROP TRIGGER {table}_no_delete")
    op.drop_table("access_log_tracking")
    op.drop_index("access_log_position", "access_log")
    op.execute("DELETE FROM access_log WHERE key_id IS NULL")
    with op.batch_alter_table("access_log") as batch:
        batch.drop_column("position")
        batch.alter_column("key_id", existing_type=sa.String, nullable=False)
    op.drop_table("seal_incidents")
    op.drop_table("checkpoints")
    op.drop_table("merkle_frontier")
    op.drop_table("merkle_leaves")
    op.execute("DELETE FROM seal_tracking")
    op.execute("DELETE FROM projection_dead_letters WHERE projection = 'seal'")
    op.execute(
        "INSERT INTO seal_tracking (application_name, notification_id) VALUES ('__migration__', 1)"
    )
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
        "merkle_frontier",
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String, nullable=False),
    )
