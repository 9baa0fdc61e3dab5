"""seed the UIDVALIDITY counter row where a database lacks it

Revision ID: mai0010
Revises: mai0009
Create Date: 2026-12-04 19:40:00

Databases built in one step (create_all + stamp) before commit 2c6a15d lack the
mail_counters row that mai0002 seeds; until their first folder was made, concurrent
first provisions on PostgreSQL each inserted it and all but one failed. Insert it, above
every UIDVALIDITY already handed out, where it is missing.
"""
from alembic import op
import sqlalchemy as sa


revision = 'mai0010'
down_revision = 'mai0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.execute(sa.text("SELECT 1 FROM mail_counters WHERE name = 'uidvalidity'")).first() is None:
        top = bind.execute(sa.text('SELECT max(uidvalidity) FROM folders')).scalar() or 0
        bind.execute(sa.text("INSERT INTO mail_counters (name, value) VALUES ('uidvalidity', :v)"), {"v": int(top)})


def downgrade() -> None:
    pass  # the row is what mai0002 should have left: keep it
