"""Issue 15. PostgreSQL: `fapiao_insert_event_groups`, the group commit's insert: the events of
several commands in one statement, each command's rows in a block of its own (a subtransaction:
a savepoint), so one command whose rows break a constraint (its optimistic check: the unique
originator_id + originator_version) is rolled back alone and answered with a NULL position,
while the others' rows stay in the one transaction. As `fapiao_insert_events` (0018) does, it
takes the EXCLUSIVE table lock first (outside every block, so a rolled-back command cannot
release it), once, and NOTIFYs once, with its whole payload already sent. SQLite needs nothing:
the recorder uses SAVEPOINT statements there.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


INSERT_EVENT_GROUPS = """
CREATE OR REPLACE FUNCTION fapiao_insert_event_groups(
    ids uuid[], versions bigint[], topics text[], states bytea[], members int[]
) RETURNS TABLE (member_no int, notification_id bigint) LANGUAGE plpgsql AS $$
DECLARE
    n int := coalesce(array_length(ids, 1), 0);
    lo int := 1;
    hi int;
    m int;
    made bigint[];
BEGIN
    LOCK TABLE ledger_events IN EXCLUSIVE MODE;
    NOTIFY ledger_events;
    WHILE lo <= n LOOP
        m := members[lo];
        hi := lo;
        WHILE hi < n AND members[hi + 1] = m LOOP
            hi := hi + 1;
        END LOOP;
        BEGIN
            WITH ins AS (
                INSERT INTO ledger_events AS t (originator_id, originator_version, topic, state)
                SELECT ids[k], versions[k], topics[k], states[k]
                FROM generate_series(lo, hi) AS g(k)
                ORDER BY g.k
                RETURNING t.notification_id
            )
            SELECT array_agg(ins.notification_id ORDER BY ins.notification_id) INTO made
            FROM ins;
            RETURN QUERY SELECT m, x.id FROM unnest(made) AS x(id);
        EXCEPTION WHEN integrity_constraint_violation THEN
            RETURN QUERY SELECT m, NULL::bigint;
        END;
        lo := hi + 1;
    END LOOP;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(INSERT_EVENT_GROUPS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP FUNCTION IF EXISTS "
            "fapiao_insert_event_groups(uuid[], bigint[], text[], bytea[], int[])"
        )
