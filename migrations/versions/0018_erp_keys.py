"""Issue 9. API keys say whether they are an ERP's shared key (`fapiao keys create
--acts-for-users`): only such a key may name the person it acts for (X-Actor-User); every other
key is itself the person, for the record and for separation of duties. Existing keys are not
ERP keys.

PostgreSQL: `fapiao_insert_events`, the events insert as one statement. Its whole payload
arrives with the call, before it runs; only then does it take the EXCLUSIVE table lock (the
commit order = the notification order), insert and NOTIFY. The lock is never held while the
server waits for the client (the library's pipelined LOCK + executemany could).

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


INSERT_EVENTS = """
CREATE OR REPLACE FUNCTION fapiao_insert_events(
    ids uuid[], versions bigint[], topics text[], states bytea[]
) RETURNS TABLE (notification_id bigint) LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    NOTIFY ledger_events;
    RETURN QUERY
    INSERT INTO ledger_events AS t (originator_id, originator_version, topic, state)
    SELECT u.i, u.v, u.t, u.s
    FROM unnest(ids, versions, topics, states) WITH ORDINALITY AS u(i, v, t, s, n)
    ORDER BY u.n
    RETURNING t.notification_id;
END
$$
"""


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(
            sa.Column("acts_for_users", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(INSERT_EVENTS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS fapiao_insert_events(uuid[], bigint[], text[], bytea[])"
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("acts_for_users")
