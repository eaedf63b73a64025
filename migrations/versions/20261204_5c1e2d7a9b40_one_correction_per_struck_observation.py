"""one correction per struck observation

Revision ID: 5c1e2d7a9b40
Revises: f4e0cee55cc0
Create Date: 2026-12-04 19:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c1e2d7a9b40'
down_revision = 'f4e0cee55cc0'
branch_labels = None
depends_on = None

observations = sa.table('observations', sa.column('id', sa.Integer()), sa.column('replaces_id', sa.Integer()))


def upgrade():
    # Until now only the tablet page checked that a struck observation had no correction yet,
    # so two corrections of one entry saved at the same moment could both be stored. Which of
    # them is right is a clinical question: nothing is changed or deleted here. If any exist,
    # the upgrade stops and names them; a clinician strikes the wrong correction (it stays on
    # the record) and an administrator unlinks it (replaces_id NULL) before upgrading again.
    twice = op.get_bind().execute(
        sa.select(observations.c.replaces_id, sa.func.count())
        .where(observations.c.replaces_id.is_not(None))
        .group_by(observations.c.replaces_id).having(sa.func.count() > 1)
        .order_by(observations.c.replaces_id)).all()
    if twice:
        listed = ", ".join(f"observation {struck} ({count} corrections)" for struck, count in twice)
        raise RuntimeError(
            "Some struck observations were corrected more than once: " + listed + ". Decide which "
            "correction stands, strike the other and set its replaces_id to NULL, then upgrade again.")
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.create_index('uq_observations_one_correction', ['replaces_id'], unique=True,
                              sqlite_where=sa.text('replaces_id IS NOT NULL'),
                              postgresql_where=sa.text('replaces_id IS NOT NULL'))


def downgrade():
    with op.batch_alter_table('observations', schema=None) as batch_op:
        batch_op.drop_index('uq_observations_one_correction',
                            sqlite_where=sa.text('replaces_id IS NOT NULL'),
                            postgresql_where=sa.text('replaces_id IS NOT NULL'))
