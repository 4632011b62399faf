"""Event store: the library's tables (events, snapshots, composite type) plus recorded_at and an
append-only guard, on PostgreSQL and SQLite.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

PG_UP = [
    """CREATE TYPE stored_event_uuid AS
       (originator_id uuid, originator_version bigint, topic text, state bytea)""",
    """CREATE TABLE ledger_events (
         originator_id uuid NOT NULL,
         originator_version bigint NOT NULL,
         topic text,
         state bytea,
         notification_id bigserial,
         recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
         PRIMARY KEY (originator_id, originator_version))
       WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000,
             autovacuum_vacuum_scale_factor = 0.5, autovacuum_analyze_threshold = 1000,
             autovacuum_analyze_scale_factor = 0.01)""",
    "CREATE UNIQUE INDEX ledger_events_notification_id_idx ON ledger_events (notification_id ASC)",
    "CREATE INDEX ledger_events_recorded_at_idx ON ledger_events (recorded_at)",
    """CREATE TABLE ledger_snapshots (
         originator_id uuid NOT NULL,
         originator_version bigint NOT NULL,
         topic text,
         state bytea,
         PRIMARY KEY (originator_id, originator_version))""",
    """CREATE FUNCTION ledger_events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION 'ledger_events is append-only: % refused', TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
    """CREATE TRIGGER ledger_events_append_only BEFORE UPDATE OR DELETE ON ledger_events
       FOR EACH ROW EXECUTE FUNCTION ledger_events_refuse_change()""",
    """CREATE TRIGGER ledger_events_no_truncate BEFORE TRUNCATE ON ledger_events
       FOR EACH STATEMENT EXECUTE FUNCTION ledger_events_refuse_change()""",
]

PG_DOWN = [
    "DROP TABLE ledger_snapshots",
    "DROP TABLE ledger_events",
    "DROP FUNCTION ledger_events_refuse_change()",
    "DROP TYPE stored_event_uuid",
]

# The library's fixed SQLite names; rowid is the log position (never reused: no deletes).
SQLITE_UP = [
    """CREATE TABLE stored_events (
         originator_id TEXT,
         originator_version INTEGER,
         topic TEXT,
         state BLOB,
         recorded_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')),
         PRIMARY KEY (originator_id, originator_version))""",
    "CREATE INDEX stored_events_recorded_at_idx ON stored_events (recorded_at)",
    """CREATE TABLE stored_snapshots (
         originator_id TEXT,
         originator_version INTEGER,
         topic TEXT,
         state BLOB,
         PRIMARY KEY (originator_id, originator_version)) WITHOUT ROWID""",
    """CREATE TRIGGER stored_events_no_update BEFORE UPDATE ON stored_events
       BEGIN SELECT RAISE(ABORT, 'stored_events is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER stored_events_no_delete BEFORE DELETE ON stored_events
       BEGIN SELECT RAISE(ABORT, 'stored_events is append-only: DELETE refused'); END""",
]

SQLITE_DOWN = ["DROP TABLE stored_snapshots", "DROP TABLE stored_events"]


def _run(statements: list[str]) -> None:
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    _run(PG_UP if op.get_bind().dialect.name == "postgresql" else SQLITE_UP)


def downgrade() -> None:
    _run(PG_DOWN if op.get_bind().dialect.name == "postgresql" else SQLITE_DOWN)
