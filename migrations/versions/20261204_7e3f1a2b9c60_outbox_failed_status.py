"""outbox: a failed status for a message that cannot be built as an e-mail

Revision ID: 7e3f1a2b9c60
Revises: 5c1e2d7a9b40
Create Date: 2026-12-04 20:40:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7e3f1a2b9c60'
down_revision = '5c1e2d7a9b40'
branch_labels = None
depends_on = None

outbox = sa.table('outbox_messages', sa.column('status', sa.String()))


def upgrade():
    # A message that cannot be made into an e-mail (a header with a line break) is 'failed':
    # never retried, shown on the board at once. Until now it stayed 'pending' for ever.
    with op.batch_alter_table('outbox_messages', schema=None, recreate='always') as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_messages_status'), type_='check')
        batch_op.create_check_constraint('status', "status IN ('pending', 'sent', 'failed')")


def downgrade():
    # A failed message goes back to pending: it is retried (and fails) as before.
    op.execute(outbox.update().where(outbox.c.status == 'failed').values(status='pending'))
    with op.batch_alter_table('outbox_messages', schema=None, recreate='always') as batch_op:
        batch_op.drop_constraint(op.f('ck_outbox_messages_status'), type_='check')
        batch_op.create_check_constraint('status', "status IN ('pending', 'sent')")
