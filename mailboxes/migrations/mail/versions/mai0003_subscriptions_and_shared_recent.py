"""subscriptions as a list of names; \\Recent claimed in the folder row

Revision ID: mai0003
Revises: mai0002
Create Date: 2026-12-04 06:30:00

Subscriptions were a flag on the folder row, so DELETE and RENAME took them away; RFC 3501
§6.3.6 says the server must not remove one unilaterally. They become their own table of names
(account_id, name) and folders.subscribed is dropped (its true rows copied over first).
folders.recent_uid holds the highest UID already announced as \\Recent (RFC 3501 §2.3.2), shared
by every session and node; 0 for existing folders, so their messages count as recent once more
("if it is not possible to determine ... SHOULD be considered recent").

On SQLite dropping a column rebuilds the table: the AUTOINCREMENT high-water mark of folders
(sqlite_sequence) is put back afterwards, so an id of a deleted folder is still never reused.
"""
from alembic import op
import sqlalchemy as sa


revision = 'mai0003'
down_revision = 'mai0002'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def _sequence() -> int | None:
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        return None
    return bind.execute(sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'folders'")).scalar()


def _restore_sequence(seq: int | None) -> None:
    if seq is not None:
        op.get_bind().execute(sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'folders'"),
                              {'seq': seq})


def upgrade() -> None:
    op.create_table('subscriptions',
    sa.Column('account_id', ID, nullable=False),
    sa.Column('name', sa.String(length=1024), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'name')
    )
    op.execute(sa.text('INSERT INTO subscriptions (account_id, name) '
                       'SELECT account_id, name FROM folders WHERE subscribed = :yes').bindparams(yes=True))
    seq = _sequence()
    with op.batch_alter_table('folders', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('recent_uid', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.drop_column('subscribed')
    _restore_sequence(seq)


def downgrade() -> None:
    seq = _sequence()
    with op.batch_alter_table('folders', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('subscribed', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.drop_column('recent_uid')
    _restore_sequence(seq)
    op.execute(sa.text('UPDATE folders SET subscribed = :yes WHERE EXISTS (SELECT 1 FROM subscriptions s '
                       'WHERE s.account_id = folders.account_id AND s.name = folders.name)').bindparams(yes=True))
    op.drop_table('subscriptions')
