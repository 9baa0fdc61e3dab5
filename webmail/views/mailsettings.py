"""Self-service mail settings: out-of-office auto-reply, delivery rules and signature, on one page of three forms."""

from __future__ import annotations

from datetime import date, timedelta

from aiohttp import web

from mailboxes.errors import InvalidInput
from mailboxes.mailsettings import (MAX_DAYS, MAX_RULE_VALUE, MAX_SUBJECT_CHARS, MAX_TEXT_CHARS, OOO_ZONE,
                                    RULE_ACTIONS, RULE_FIELDS, OutOfOffice, day_after, day_start)

from .. import i18n
from ..context import LOCALE, WEBMAIL
from ..sessions import require_account

PAGE = "/settings/mail"
MAX_ID_CHARS = 12


def _field(form, name: str, limit: int) -> str:
    v = form.get(name, "")
    return v[:limit] if isinstance(v, str) else ""


def _day(text: str) -> date | None:
    """A date input's value (YYYY-MM-DD), None when empty; InvalidInput when not a date."""
    if not text.strip():
        return None
    try:
        return date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise InvalidInput("not a date") from None


async def page(request: web.Request, *, error: str | None = None, status: int = 200) -> web.Response:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    settings = wm.mailboxes.settings
    ooo = await settings.out_of_office(account.id)
    start = ooo.start.astimezone(OOO_ZONE).date().isoformat() if ooo.start else ""
    end = (ooo.end.astimezone(OOO_ZONE) - timedelta(days=1)).date().isoformat() if ooo.end else ""
    folders = [f.name for f in await wm.mailboxes.store.folders(account) if not f.read_only]
    _ = i18n.translator(request[LOCALE])
    labels = {"from": _("ms_field_from"), "to": _("ms_field_to"), "subject": _("ms_field_subject"),
              "list-id": _("ms_field_list_id"), "folder": _("ms_action_folder"), "flag": _("ms_action_flag"),
              "seen": _("ms_action_seen"), "stop": _("ms_action_stop"), "up": _("ms_rule_up"),
              "down": _("ms_rule_down"), "delete": _("ms_rule_delete")}
    return wm.render(request, "mailsettings.html", status=status, ooo=ooo, ooo_start=start, ooo_end=end,
                     signature=await settings.signature(account.id), rules=await settings.rules(account.id),
                     folders=folders, labels=labels, rule_fields=RULE_FIELDS, rule_actions=RULE_ACTIONS, error=error,
                     saved=request.query.get("saved", "") in ("ooo", "signature", "rules"),
                     max_days=MAX_DAYS, max_text=MAX_TEXT_CHARS, max_subject=MAX_SUBJECT_CHARS,
                     max_value=MAX_RULE_VALUE)


async def save_out_of_office(request: web.Request) -> web.Response:
    account = require_account(request)
    form = await request.post()
    _ = i18n.translator(request[LOCALE])
    try:
        first, last = _day(_field(form, "start", 32)), _day(_field(form, "end", 32))
        days = int(_field(form, "days", 4) or "7")
    except (InvalidInput, ValueError):
        return await page(request, error=_("ms_bad_input"), status=400)
    ooo = OutOfOffice(form.get("enabled") == "on", day_start(first) if first else None,
                      day_after(last) if last else None, _field(form, "subject", MAX_SUBJECT_CHARS + 1),
                      _field(form, "body", MAX_TEXT_CHARS + 1).replace("\r\n", "\n"), days)
    # The usual mistakes in the reader's language (the store checks everything again).
    if first and last and last < first:
        return await page(request, error=_("ms_ooo_dates_order"), status=400)
    if ooo.enabled and not ooo.body.strip():
        return await page(request, error=_("ms_ooo_needs_text"), status=400)
    if not 1 <= days <= MAX_DAYS:
        return await page(request, error=_("ms_bad_input"), status=400)
    return await _saved(request, "ooo", request.app[WEBMAIL].mailboxes.settings.set_out_of_office(
        account.id, ooo))


async def save_signature(request: web.Request) -> web.Response:
    account = require_account(request)
    form = await request.post()
    return await _saved(request, "signature", request.app[WEBMAIL].mailboxes.settings.set_signature(
        account.id, _field(form, "signature", MAX_TEXT_CHARS + 1)))


async def add_rule(request: web.Request) -> web.Response:
    account = require_account(request)
    wm = request.app[WEBMAIL]
    form = await request.post()
    action = _field(form, "action", 16)
    argument = _field(form, "folder" if action == "folder" else "flag", MAX_RULE_VALUE + 1)
    if action == "folder" and argument not in {f.name for f in await wm.mailboxes.store.folders(account)}:
        _ = i18n.translator(request[LOCALE])
        return await page(request, error=_("ms_no_folder"), status=400)  # only the account's own folders
    return await _saved(request, "rules", wm.mailboxes.settings.add_rule(
        account.id, _field(form, "field", 16), _field(form, "value", MAX_RULE_VALUE + 1), action, argument))


async def change_rule(request: web.Request) -> web.Response:
    """Remove a rule or move it up or down; another account's rule id is 404 (the store's NotFound)."""
    account = require_account(request)
    form = await request.post()
    try:
        rule_id = int(_field(form, "rule", MAX_ID_CHARS))
    except ValueError:
        raise web.HTTPNotFound() from None
    settings = request.app[WEBMAIL].mailboxes.settings
    op = _field(form, "op", 8)
    if op == "delete":
        await settings.remove_rule(account.id, rule_id)
    elif op in ("up", "down"):
        await settings.move_rule(account.id, rule_id, op == "up")
    else:
        raise web.HTTPBadRequest()
    raise web.HTTPSeeOther(PAGE + "?saved=rules")


async def _saved(request: web.Request, what: str, change) -> web.Response:
    try:
        await change
    except InvalidInput as exc:
        _ = i18n.translator(request[LOCALE])
        return await page(request, error=_("ms_invalid", detail=str(exc)), status=400)
    raise web.HTTPSeeOther(f"{PAGE}?saved={what}")


async def settings_page(request: web.Request) -> web.Response:
    return await page(request)
