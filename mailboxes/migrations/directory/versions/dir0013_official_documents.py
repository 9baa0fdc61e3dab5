"""official documents

Revision ID: dir0013
Revises: dir0010
Create Date: 2026-12-04 16:23:33

Issue 12: partner organisations, documents dispatched with their tracking per recipient,
documents received and registered, and the quarantine of document messages not registered.
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0013'
down_revision = 'dir0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('document_quarantine',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('raw', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_table('documents_in',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('partner_org', sa.String(length=64), nullable=False),
    sa.Column('issuing_organ', sa.String(length=100), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('urgency', sa.String(length=8), nullable=False),
    sa.Column('reg_year', sa.Integer(), nullable=False),
    sa.Column('reg_seq', sa.Integer(), nullable=False),
    sa.Column('registration_number', sa.String(length=100), nullable=False),
    sa.Column('manifest', sa.Text(), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_by', sa.String(length=100), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('partner_org', 'issuing_organ', 'number'),
    sa.UniqueConstraint('reg_year', 'reg_seq'),
    sqlite_autoincrement=True
    )
    op.create_table('documents_out',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('issuing_organ', sa.String(length=100), nullable=False),
    sa.Column('year', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('urgency', sa.String(length=8), nullable=False),
    sa.Column('manifest', sa.Text(), nullable=False),
    sa.Column('sender', sa.String(length=320), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('issuing_organ', 'year', 'number'),
    sqlite_autoincrement=True
    )
    op.create_table('partners',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('address', sa.String(length=320), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('org'),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partners_domain'), ['domain'], unique=False)

    op.create_table('document_recipients',
    sa.Column('document_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('org', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=255), nullable=False),
    sa.Column('queue_id', sa.String(length=32), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure', sa.String(length=300), nullable=False),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('registered_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('signed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('registration_number', sa.String(length=100), nullable=False),
    sa.Column('signed_by', sa.String(length=100), nullable=False),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['document_id'], ['documents_out.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('document_id', 'org')
    )
    with op.batch_alter_table('document_recipients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_document_recipients_queue_id'), ['queue_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('document_recipients', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_document_recipients_queue_id'))
    op.drop_table('document_recipients')
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partners_domain'))

    op.drop_table('partners')
    op.drop_table('documents_out')
    op.drop_table('documents_in')
    op.drop_table('document_quarantine')
