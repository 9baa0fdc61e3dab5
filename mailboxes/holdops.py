"""Placing and lifting legal holds and changing retention policies, each audited: the one path of `postroom hold/retention` and the admin console.

The audit entries (hold.place, hold.release, retention.set, retention.remove) say who, through
which interface (`via`: cli or web) and why (`reason`, when one was given).
"""

from __future__ import annotations

import logging

from . import retention
from .errors import InvalidInput
from .holds import LegalHold
from .retention import Policy

log = logging.getLogger("postroom.admin")
MAX_REASON = 500  # characters of the reason given for placing or lifting a hold


def _reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"a reason is at most {MAX_REASON} characters")
    return reason


async def _audit(mb, actor: str, action: str, target: str, **detail) -> None:
    await mb.directory.audit(actor, action, target, **detail)
    log.info("admin action=%s target=%s actor=%s via=%s", action, target, actor, detail.get("via", ""))


async def place_hold(mb, actor: str, name: str, *, account: str | None = None, department: str | None = None,
                     criteria: dict | None = None, reason: str = "", via: str) -> LegalHold:
    """A hold on an account (by address), a department (by code) or a saved search (criteria, optionally
    within the account or department); NotFound for an unknown account or department, InvalidInput else."""
    reason = _reason(reason)
    acct = await mb.directory.account(account) if account else None
    h = await mb.store.holds.add(name, actor=actor, account=acct, department=department or None, criteria=criteria)
    await _audit(mb, actor, "hold.place", f"hold#{h.id}", name=h.name, kind=h.kind, account=account or "",
                 department=h.department_code or "", criteria=h.criteria, reason=reason, via=via)
    return h


async def lift_hold(mb, actor: str, hold_id: int, *, reason: str = "", via: str) -> LegalHold:
    reason = _reason(reason)
    h = await mb.store.holds.release(hold_id, actor=actor)
    await _audit(mb, actor, "hold.release", f"hold#{h.id}", name=h.name, reason=reason, via=via)
    return h


async def set_retention(mb, actor: str, kind: str, days: int, then: str, *, department: str = "",
                        via: str) -> Policy:
    p = await retention.set_policy(mb.router.central, kind, days, then, department=department)
    await _audit(mb, actor, "retention.set", p.folder_kind, department=p.department_code, days=p.days,
                 then=p.action, via=via)
    return p


async def remove_retention(mb, actor: str, kind: str, *, department: str = "", via: str) -> None:
    await retention.remove_policy(mb.router.central, kind, department=department)
    await _audit(mb, actor, "retention.remove", kind, department=department, via=via)
