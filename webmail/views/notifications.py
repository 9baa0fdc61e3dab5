"""The notification preferences page (/settings/notifications): immediate mail or an hourly/daily digest per event type.

The page `List-Unsubscribe` of every workflow notification points at (bridges/notify.py). The same
choice is open through the API (PUT /api/v1/events/preferences); both write mailboxes.events.
Urgent events are always sent at once, whatever is chosen here.
"""

from __future__ import annotations

from aiohttp import web

from mailboxes.events import MODES, EventStore

from .. import i18n
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account

SHIPPED_TYPES = ("approval_request", "document_arrived", "meeting_invitation", "reminder")
MAX_FORM_TYPES = 100  # types one form may set


def _store(request: web.Request) -> EventStore:
    return EventStore(request.app[WEBMAIL].mailboxes.router.central)


async def page(request: web.Request) -> web.Response:
    acct = require_account(request)
    prefs = await _store(request).preferences(acct.id)
    types = list(SHIPPED_TYPES) + sorted(t for t in prefs if t not in SHIPPED_TYPES)
    catalogue = i18n.MESSAGES[request.get(LOCALE, i18n.DEFAULT)]
    labels = {t: catalogue.get(f"nt_type_{t}", t) for t in types}
    modes = {m: catalogue[f"nt_mode_{m}"] for m in MODES}
    return request.app[WEBMAIL].render(request, "notifications.html", types=types, labels=labels, prefs=prefs,
                                       modes=modes, done=request.query.get("done") == "1")


async def save(request: web.Request) -> web.Response:
    acct = require_account(request)
    form = await request.post()
    store = _store(request)
    known = set(SHIPPED_TYPES) | set(await store.preferences(acct.id))
    choice = {}
    for key, value in list(form.items())[:MAX_FORM_TYPES + 1]:
        if key.startswith("mode-") and key[5:] in known:
            if value not in MODES:
                raise web.HTTPBadRequest(text="bad mode", content_type="text/plain")
            choice[key[5:]] = str(value)
    await store.set_preferences(acct.id, choice)
    raise web.HTTPSeeOther("/settings/notifications?done=1")
