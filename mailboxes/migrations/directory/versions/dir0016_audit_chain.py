"""audit log hash chain

Revision ID: dir0016
Revises: dir0017
Create Date: 2026-12-04 20:45:00

Issue 13 point 3: each audit entry carries a sequence number, the previous
entry's hash and its own (mailboxes/auditlog.py); existing rows are chained
in id order here.
"""
from alembic import op
import sqlalchemy as sa

from mailboxes.auditlog import GENESIS, entry_hash


revision = 'dir0016'
down_revision = 'dir0017'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log', table_kwargs={'sqlite_autoincrement': True}) as b:
        b.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
        b.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        b.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
    conn = op.get_bind()
    log = sa.table('audit_log', sa.column('id'), sa.column('at', sa.DateTime(timezone=True)), sa.column('actor'),
                   sa.column('action'), sa.column('target'), sa.column('detail'), sa.column('seq'),
                   sa.column('prev_hash'), sa.column('hash'))
    prev = GENESIS
    rows = conn.execute(sa.select(log.c.id, log.c.at, log.c.actor, log.c.action, log.c.target, log.c.detail)
                        .order_by(log.c.id)).all()
    for seq, r in enumerate(rows, 1):
        h = entry_hash(seq, r.at, r.actor, r.action, r.target, r.detail, prev)
        conn.execute(sa.update(log).where(log.c.id == r.id).values(seq=seq, prev_hash=prev, hash=h))
        prev = h
    with op.batch_alter_table('audit_log', table_kwargs={'sqlite_autoincrement': True}) as b:
        b.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        b.alter_column('prev_hash', existing_type=sa.String(length=64), nullable=False)
        b.alter_column('hash', existing_type=sa.String(length=64), nullable=False)
        b.create_index('ix_audit_log_seq', ['seq'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('audit_log', table_kwargs={'sqlite_autoincrement': True}) as b:
        b.drop_index('ix_audit_log_seq')
        b.drop_column('hash')
        b.drop_column('prev_hash')
        b.drop_column('seq')
