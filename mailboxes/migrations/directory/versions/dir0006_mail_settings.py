"""per-account mail settings: out-of-office, signature, rules, auto-reply log

Revision ID: dir0006
Revises: dir0005
Create Date: 2026-12-04 12:50:00

Out-of-office auto-replies (RFC 3834), simple delivery rules and a signature per account
(issue 10 point 4), in the central database beside the accounts.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0006'
down_revision = 'dir0005'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('mail_settings',
    sa.Column('account_id', ID, nullable=False),
    sa.Column('ooo_enabled', sa.Boolean(), nullable=False),
    sa.Column('ooo_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ooo_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ooo_subject', sa.String(length=255), nullable=False),
    sa.Column('ooo_body', sa.Text(), nullable=False),
    sa.Column('ooo_days', sa.Integer(), nullable=False),
    sa.Column('signature', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id'),
    )
    op.create_table('mail_rules',
    sa.Column('id', ID, nullable=False),
    sa.Column('account_id', ID, nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('field', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('argument', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True,
    )
    with op.batch_alter_table('mail_rules', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mail_rules_account_id'), ['account_id'], unique=False)
    op.create_table('autoreply_sent',
    sa.Column('account_id', ID, nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('replied_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'sender'),
    )


def downgrade() -> None:
    op.drop_table('autoreply_sent')
    with op.batch_alter_table('mail_rules', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mail_rules_account_id'))
    op.drop_table('mail_rules')
    op.drop_table('mail_settings')
