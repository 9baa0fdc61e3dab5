"""pull mode

Revision ID: dir0020
Revises: dir0019 (written on dir0013; relinked at merge after dir0021 and dir0019)
Create Date: 2026-12-04 19:45:00

Issue 12 point 5: a route's kind (smtp, or pull: held in a local account for the district to
fetch over IMAP), and the district's record of the messages it fetched (pull_fetched).
"""
from alembic import op
import sqlalchemy as sa


revision = 'dir0020'
down_revision = 'dir0019'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('routes') as batch:
        batch.add_column(sa.Column('kind', sa.String(length=8), nullable=False, server_default='smtp'))
    op.create_table('pull_fetched',
    sa.Column('id', ID, nullable=False),
    sa.Column('upstream', sa.String(length=400), nullable=False),
    sa.Column('uidvalidity', sa.BigInteger(), nullable=False),
    sa.Column('uid', sa.BigInteger(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('upstream', 'uidvalidity', 'uid', name='uq_pull_fetched_uid'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_pull_fetched_digest', 'pull_fetched', ['upstream', 'digest'], unique=False)
    op.create_index('ix_pull_fetched_at', 'pull_fetched', ['fetched_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_pull_fetched_at', table_name='pull_fetched')
    op.drop_index('ix_pull_fetched_digest', table_name='pull_fetched')
    op.drop_table('pull_fetched')
    with op.batch_alter_table('routes') as batch:
        batch.drop_column('kind')
