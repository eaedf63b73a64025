"""idempotency key status code not null

Revision ID: 3a9662c5d950
Revises: 02179ee8484e
Create Date: 2026-12-01 16:26:06.216578

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3a9662c5d950'
down_revision = '02179ee8484e'
branch_labels = None
depends_on = None


# The reply a legacy key without one replays from now on (a problem body, as the app writes).
OUTCOME_UNKNOWN_STATUS = 409
OUTCOME_UNKNOWN_REPLY = {
    "type": "/problems/idempotency-outcome-unknown",
    "title": "The first request with this Idempotency-Key left no reply",
    "status": OUTCOME_UNKNOWN_STATUS,
    "detail": ("The first request sent with this Idempotency-Key kept no reply, so whether it "
               "was recorded is not known. Check the record; if the write is still needed, "
               "send it with a new Idempotency-Key."),
}

keys = sa.table(
    'idempotency_keys',
    sa.column('status_code', sa.Integer()),
    sa.column('response', sa.JSON()),
)


def upgrade():
    # Legacy rows with no status_code: before replies were stored with the key (7f309ae), a key
    # was claimed first by an INSERT with status_code NULL and its reply written by an UPDATE
    # at the end of the write, and that code answered a retry finding a NULL row with "in use
    # by a request that has not finished". Claim, write and reply were one transaction, so a
    # committed NULL row should not exist; if one does, the claim was committed without its
    # reply, whatever the write had done by then may have been committed with it, and nothing
    # records what that was.
    #
    # Deleting such rows is NOT safe: it would free the key, and a tablet retrying the same
    # request would do the clinical write again (a second observation, a second dose). Keeping
    # them NULL is not possible under NOT NULL, and they cannot be replayed as they are (the
    # current code fails on a NULL status_code). So each is given a stored reply of its own:
    # a 409 problem saying the first outcome is unknown. The key stays taken, so a retry
    # still writes nothing (it rolls its work back and replays this 409; another body with the
    # key is still 422 idempotency-key-reused), and the client is told to check the record and
    # use a new key. Nothing else changes: the rows keep their expiry and are purged with the
    # rest after their 7 days.
    op.execute(
        keys.update()
        .where(keys.c.status_code.is_(None))
        .values(status_code=OUTCOME_UNKNOWN_STATUS, response=OUTCOME_UNKNOWN_REPLY)
    )
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('status_code',
               existing_type=sa.INTEGER(),
               nullable=False)


def downgrade():
    # The column may hold NULL again; the rows given a reply above keep it (a NULL status_code
    # is what the code of the previous revision cannot replay).
    with op.batch_alter_table('idempotency_keys', schema=None) as batch_op:
        batch_op.alter_column('status_code',
               existing_type=sa.INTEGER(),
               nullable=True)
