"""protocol proposals, the clinical_lead role, admission overrides and re-referrals

Revision ID: 59f9ec9e2443
Revises: 3a9662c5d950
Create Date: 2026-12-04 10:00:00.000000

A protocol change is proposed by a manager and in force only once a clinical lead approves it
(protocol_proposals; unit_protocols.approved_by_id). Versions adopted before this revision
keep approved_by_id NULL: nobody approved them, and the report says so.
"""
from contextlib import contextmanager

from alembic import op
import sqlalchemy as sa

import config.db


# revision identifiers, used by Alembic.
revision = '59f9ec9e2443'
down_revision = '3a9662c5d950'
branch_labels = None
depends_on = None

OLD_ROLES = "role IN ('nurse', 'doctor', 'gp', 'manager', 'inspector')"
NEW_ROLES = "role IN ('nurse', 'doctor', 'gp', 'manager', 'inspector', 'clinical_lead')"


@contextmanager
def foreign_keys_off_on_sqlite():
    """SQLite changes a CHECK or adds a foreign key by copying the table, and dropping the old
    staff or referrals table breaks every reference to it while foreign keys are enforced.
    SQLite's own recipe: foreign keys off (only possible between transactions), change,
    check that every reference still holds, foreign keys on again. PostgreSQL alters in place."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    yield
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"foreign keys broken by the migration: {broken[:5]}")
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=ON")
    bind.exec_driver_sql("BEGIN IMMEDIATE")


def upgrade():
    with foreign_keys_off_on_sqlite():
        _upgrade()


def downgrade():
    with foreign_keys_off_on_sqlite():
        _downgrade()


def _upgrade():
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_staff_role'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_staff_role'), NEW_ROLES)

    with op.batch_alter_table('unit_protocols', schema=None) as batch_op:
        batch_op.add_column(sa.Column('approved_by_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_unit_protocols_approved_by_id_staff'),
                                    'staff', ['approved_by_id'], ['id'])

    op.create_table('protocol_proposals',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('unit_id', sa.Integer(), nullable=False),
    sa.Column('section', sa.String(length=40), nullable=False),
    sa.Column('values', sa.JSON(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('proposed_by_id', sa.Integer(), nullable=False),
    sa.Column('proposed_at', config.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', config.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('decision_reason', sa.Text(), nullable=True),
    sa.Column('protocol_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('proposed', 'approved', 'rejected')", name=op.f('ck_protocol_proposals_status')),
    sa.ForeignKeyConstraint(['decided_by_id'], ['staff.id'], name=op.f('fk_protocol_proposals_decided_by_id_staff')),
    sa.ForeignKeyConstraint(['proposed_by_id'], ['staff.id'], name=op.f('fk_protocol_proposals_proposed_by_id_staff')),
    sa.ForeignKeyConstraint(['protocol_id'], ['unit_protocols.id'], name=op.f('fk_protocol_proposals_protocol_id_unit_protocols')),
    sa.ForeignKeyConstraint(['unit_id'], ['units.id'], name=op.f('fk_protocol_proposals_unit_id_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_protocol_proposals')),
    sa.UniqueConstraint('protocol_id', name=op.f('uq_protocol_proposals_protocol_id'))
    )
    with op.batch_alter_table('protocol_proposals', schema=None) as batch_op:
        batch_op.create_index('ix_protocol_proposals_unit_status', ['unit_id', 'status'], unique=False)

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.add_column(sa.Column('previous_decline_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('changed_figures', sa.JSON(), nullable=True))
        batch_op.create_index(batch_op.f('ix_referrals_previous_decline_id'), ['previous_decline_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_referrals_previous_decline_id_referrals'),
                                    'referrals', ['previous_decline_id'], ['id'])

    with op.batch_alter_table('admissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('override_reason', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('override_criteria', sa.JSON(), nullable=True))


def _downgrade():
    with op.batch_alter_table('admissions', schema=None) as batch_op:
        batch_op.drop_column('override_criteria')
        batch_op.drop_column('override_reason')

    with op.batch_alter_table('referrals', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_referrals_previous_decline_id_referrals'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_referrals_previous_decline_id'))
        batch_op.drop_column('changed_figures')
        batch_op.drop_column('previous_decline_id')

    with op.batch_alter_table('protocol_proposals', schema=None) as batch_op:
        batch_op.drop_index('ix_protocol_proposals_unit_status')
    op.drop_table('protocol_proposals')

    with op.batch_alter_table('unit_protocols', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_unit_protocols_approved_by_id_staff'), type_='foreignkey')
        batch_op.drop_column('approved_by_id')

    # A clinical lead's account cannot stay under the old constraint: it is refused until the
    # role is changed (the downgrade fails rather than drop anyone's account or history).
    with op.batch_alter_table('staff', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_staff_role'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_staff_role'), OLD_ROLES)
