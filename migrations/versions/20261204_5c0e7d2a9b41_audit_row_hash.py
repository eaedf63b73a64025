"""audit events carry the hash of the clinical row they record

Revision ID: 5c0e7d2a9b41
Revises: 59f9ec9e2443
Create Date: 2026-12-04 19:00:00

Events written before this revision have no row hash: `flask audit verify` counts their rows
as recorded before row hashes (not checked), and their own hashes are unchanged (an event
without a row hash is hashed exactly as before).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5c0e7d2a9b41'
down_revision = '59f9ec9e2443'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('row_hash', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_column('row_hash')
