"""What every webmail handler reaches through `request.app[WEBMAIL]`: the parts passed in and the page renderer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from mailboxes.changes import ChangeBus
from mailboxes.service import Mailboxes
from mailboxes.websessions import WebSession, WebSessions

from mailboxes.model import Account

from . import i18n

if TYPE_CHECKING:
    from .selfservice import SelfService

# Session lifetimes: a session ends after IDLE without a request, and MAX_AGE after sign-in in any case.
IDLE = timedelta(hours=8)
MAX_AGE = timedelta(days=7)
TOUCH_EVERY = timedelta(minutes=1)  # last-seen is written at most this often per session


class SignInRefused(Exception):
    """Wrong credentials, a disabled account (never says which), or throttled (`retry_after` seconds)."""

    def __init__(self, retry_after: float | None = None) -> None:
        super().__init__("sign-in refused")
        self.retry_after = retry_after


# The server's one Authenticator, adapted by the composition root: (address, password, client ip)
# -> the account, or SignInRefused. The same throttle and credential cache as IMAP and SMTP.
Login = Callable[[str, str, str | None], Awaitable[Account]]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Webmail:
    """What the handlers reach through `request.app[WEBMAIL]`."""

    mailboxes: Mailboxes
    login: Login
    sessions: WebSessions
    templates: jinja2.Environment
    submit: Callable[..., Awaitable[Any]] | None = None
    bus: ChangeBus | None = None
    clock: Callable[[], datetime] = utcnow
    hostname: str = "localhost"
    session_idle: timedelta = IDLE
    session_max_age: timedelta = MAX_AGE
    selfservice: SelfService | None = None  # second factor, re-authentication, mail listeners

    def render(self, request: web.Request, template: str, *, status: int = 200, **values: Any) -> web.Response:
        locale = request.get(LOCALE, i18n.DEFAULT)
        page = self.templates.get_template(template).render(
            _=i18n.translator(locale), locale=locale, html_lang=i18n.HTML_LANG[locale],
            languages=i18n.LANGUAGE_NAMES, csrf=request.get(CSRF, ""), account=request.get(ACCOUNT),
            request=request, static=lambda name: str(request.app.router["static"].url_for(filename=name)),
            approvals_badge=request.get(APPROVALS_BADGE), **values)
        return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


WEBMAIL = web.AppKey("webmail", Webmail)


def _request_key(name: str, kind: type):
    """A typed request key where aiohttp has them (3.14+), else the plain name."""
    make = getattr(web, "RequestKey", None)
    return make(name, kind) if make is not None else name


# What the middlewares put on a request for the handlers.
LOCALE = _request_key("locale", str)
SESSION = _request_key("session", WebSession)
ACCOUNT = _request_key("account", Account)
SESSION_TOKEN = _request_key("session_token", str)
CSRF = _request_key("csrf", str)
APPROVALS_BADGE = _request_key("approvals_badge", int)  # held mail the account may decide (views/approvals.py)

