"""The subscription list's one rule beyond add and remove: a RENAME takes the renamed folders' names along."""

from __future__ import annotations

from sqlalchemy import and_, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from . import schema as t


async def move_with_rename(conn: AsyncConnection, account_id: int, renamed: dict[str, str]) -> None:
    """Re-point the subscriptions of the folders a RENAME moved (``renamed``: old name -> new name).

    RFC 3501 §6.3.6 forbids removing a subscription unilaterally; it does not ask RENAME to move
    one, but Dovecot does, and a client that renames a subscribed tree expects it to stay
    subscribed. Only names that were folders move: a subscription to a name that no folder had
    (a deleted child, say) stays as it was. The list is bounded (MAX_SUBSCRIPTIONS), so it is read whole.
    """
    sub = t.subscriptions
    mine = sub.c.account_id == account_id
    have = set((await conn.execute(select(sub.c.name).where(mine))).scalars())
    for old, new in renamed.items():
        if old not in have:
            continue
        await conn.execute(delete(sub).where(and_(mine, sub.c.name == old)))
        have.discard(old)
        if new not in have:
            await conn.execute(insert(sub).values(account_id=account_id, name=new))
            have.add(new)
