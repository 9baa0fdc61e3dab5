"""Builds the webmail's aiohttp application from the parts passed in (store, sign-in, submit, bus, clock): no globals.

The routes are one visible table (ROUTES); every handler is a small function in
webmail/views/. Middlewares, outermost first: security headers, the session (who is
signed in), CSRF (every state-changing request), locale.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from mailboxes.apitokens import ApiTokens
from mailboxes.changes import ChangeBus
from mailboxes.secondfactor import SecondFactors
from mailboxes.service import Mailboxes
from mailboxes.websessions import WebSessions

from . import api, forwarded, security, sessions
from .adminqueue import Operations
from .api_queue import OPERATIONS
from .context import WEBMAIL, Login, Webmail, utcnow
from .selfservice import SelfService
from .uploads import UploadSpool
from .views import account as account_views
from .views import admin_queue as admin_queue_views
from .views import addressbook as addressbook_views
from .views import admin_people as admin_people_views
from .views import auth as auth_views
from .views import autoconfig as autoconfig_views
from .views import carddav as carddav_views
from .views import compose as compose_views
from .views import drafts as drafts_views
from .views import live as live_views
from .views import mail as mail_views
from .views import twofactor as twofactor_views
from .views import uploads as upload_views
from .views import mailsettings as mailsettings_views
from .views import notifications as notifications_views
from .views import message as message_views
from .views import approvals as approval_views
from .views import readstatus as readstatus_views
from .views import documents as documents_views
from .views import admin_audit as admin_audit_views
from .views import admin_holds as admin_holds_views
from .views import admin_sources as admin_sources_views

HERE = Path(__file__).resolve().parent


ROUTES: tuple[tuple[str, str, Callable], ...] = (
    ("GET", "/", mail_views.home),
    ("GET", "/login", auth_views.login_form),
    ("POST", "/login", auth_views.login_submit),
    ("POST", "/logout", auth_views.logout),
    ("POST", "/logout-everywhere", auth_views.logout_everywhere),
    ("POST", "/lang", auth_views.set_language),
    ("GET", "/mail", mail_views.folder_page),
    ("GET", "/message", message_views.read),
    ("GET", "/message/body", message_views.body_frame),
    ("GET", "/message/part", message_views.download_part),
    ("POST", "/message/action", message_views.action),
    ("GET", "/compose", compose_views.form),
    ("POST", "/compose", compose_views.send),
    ("GET", "/events", live_views.events),
    # --- sign-in second factor, self-service account pages, client autoconfiguration (issue 10 auth) ---
    ("GET", "/login/code", twofactor_views.code_form),
    ("POST", "/login/code", twofactor_views.code_submit),
    ("GET", "/settings/two-factor", twofactor_views.settings),
    ("POST", "/settings/two-factor/begin", twofactor_views.begin),
    ("GET", "/settings/two-factor/qr.svg", twofactor_views.qr_code),
    ("POST", "/settings/two-factor/confirm", twofactor_views.confirm),
    ("POST", "/settings/two-factor/disable", twofactor_views.disable),
    ("POST", "/settings/two-factor/recovery", twofactor_views.new_recovery_codes),
    ("GET", "/settings/password", account_views.password_form),
    ("POST", "/settings/password", account_views.password_change),
    ("GET", "/settings/app-passwords", account_views.app_passwords),
    ("POST", "/settings/app-passwords", account_views.app_password_create),
    ("POST", "/settings/app-passwords/revoke", account_views.app_password_revoke),
    ("GET", "/settings/mail-client", account_views.mail_client),
    ("GET", "/settings/mail-client/postroom.mobileconfig", account_views.mobileconfig),
    ("GET", "/.well-known/autoconfig/mail/config-v1.1.xml", autoconfig_views.thunderbird),
    ("GET", "/mail/config-v1.1.xml", autoconfig_views.thunderbird),
    *(("POST", path, autoconfig_views.autodiscover) for path in autoconfig_views.AUTODISCOVER_PATHS),
    # mail settings: out-of-office, rules, signature (issue 10 point 4)
    ("GET", "/settings/mail", mailsettings_views.settings_page),
    ("POST", "/settings/out-of-office", mailsettings_views.save_out_of_office),
    ("POST", "/settings/rules", mailsettings_views.add_rule),
    ("POST", "/settings/rules/change", mailsettings_views.change_rule),
    ("POST", "/settings/signature", mailsettings_views.save_signature),
    # workflow notifications: immediate or digest per event type (issue 11 point 3)
    ("GET", "/settings/notifications", notifications_views.page),
    ("POST", "/settings/notifications", notifications_views.save),
    # read status and recall (issue 10 point 5)
    ("GET", "/readstatus/{id}", readstatus_views.status_json),
    ("POST", "/readstatus/{id}/recall", readstatus_views.recall),
    # compose: drafts (issue 10 point 2)
    ("POST", "/compose/draft", drafts_views.save),
    # organisation address book and recipient completion (issue 10 point 3)
    ("GET", "/addressbook", addressbook_views.page),
    ("GET", "/addressbook/complete", addressbook_views.complete),
    ("*", "/.well-known/carddav", carddav_views.well_known),
    ("*", "/carddav", carddav_views.dav),
    ("*", "/carddav/{tail:.*}", carddav_views.dav),
    # compose: attachments uploaded as they are chosen (issue 10 point 2)
    ("POST", "/compose/upload", upload_views.upload),
    ("POST", "/compose/upload/remove", upload_views.remove),
    # admin console: accounts, departments, groups, aliases (issue 10 point 7)
    *admin_people_views.ROUTES,
    # admin console, operations: queue, DKIM keys, dashboard (issue 10 point 7)
    ("GET", "/admin/queue", admin_queue_views.queue_page),
    ("POST", "/admin/queue/action", admin_queue_views.queue_action),
    ("GET", "/admin/dkim", admin_queue_views.dkim_page),
    ("POST", "/admin/dkim/generate", admin_queue_views.dkim_generate),
    ("GET", "/admin/dashboard", admin_queue_views.dashboard),
    # approvals of held mail (issue 13)
    ("GET", "/approvals", approval_views.page),
    ("GET", "/approvals/{id}", approval_views.view),
    ("POST", "/approvals/{id}/{decision:approve|reject}", approval_views.decide),
    # official documents: 收文 for registrars, 发文 tracking for dispatchers (issue 12)
    *documents_views.ROUTES,
    # admin console: the audit log, legal holds and retention (issue 13 points 3 and 4)
    *admin_audit_views.ROUTES,
    *admin_holds_views.ROUTES,
    # admin console: workflow sources, their tokens and webhooks (issue 11 point 1)
    *admin_sources_views.ROUTES,
)


class CompiledTemplates(jinja2.BytecodeCache):
    """The templates' compiled code, kept for the process: an app made again (a service restarted in-process,
    every test's server) loads it instead of compiling all templates again, 0.2-0.5 s each time. Jinja checks
    each entry against its template's source (a checksum), so an edited template is compiled afresh."""

    def __init__(self) -> None:
        self.codes: dict[str, bytes] = {}

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        code = self.codes.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        self.codes[bucket.key] = bucket.bytecode_to_string()


COMPILED = CompiledTemplates()


def _environment() -> jinja2.Environment:
    """The templates' environment; one shape for all, as COMPILED's entries are keyed by name and source only."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), bytecode_cache=COMPILED,
                              autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def compile_templates() -> None:
    """Compile every template into COMPILED: in a thread at start (on the loop it held it 250-390 ms)."""
    env = _environment()
    for name in env.list_templates():
        env.get_template(name)


def make_app(mailboxes: Mailboxes, *, login: Login, submit: Callable[..., Awaitable[Any]] | None = None,
             bus: ChangeBus | None = None, clock: Callable[[], datetime] = utcnow,
             hostname: str = "localhost", selfservice: SelfService | None = None,
             upload_dir: Path | None = None, api_routes: tuple[api.ExtraRoute, ...] = (),
             operations: Operations | None = None, forwarded_trusted: tuple[str, ...] = (),
             approvals: Any = None, documents: Any = None,
             audit_anchor: Path | None = None, webhooks_plain_http: bool = False) -> web.Application:
    """The webmail application; `login(address, password, ip)` is the server's one Authenticator, adapted.

    `upload_dir`: the compose upload spool (under the data directory); None: a temporary one, removed at stop.
    `forwarded_trusted`: networks of reverse proxies whose Forwarded header is believed (webmail/forwarded.py).
    `documents`: the official-documents pages' calls (bridges.docpages.DocumentPages), or None: no such pages.
    `audit_anchor`: the audit anchor file the console's chain verification reads (None: no anchors).
    `webhooks_plain_http`: [webhooks] allow_plain_http, the console's URL policy for webhook endpoints.
    """
    templates = _environment()
    templates.globals["documents"] = documents  # the navigation asks it who may see the documents pages
    # Loaded at start-up, not on the loop under the first request; from COMPILED when compile_templates ran.
    for name in templates.list_templates():
        templates.get_template(name)
    wm = Webmail(mailboxes, login, WebSessions(mailboxes.router.central, clock=clock), templates,
                 submit=submit, bus=bus, clock=clock, hostname=hostname, selfservice=selfservice or SelfService())
    if wm.selfservice.factors is None:
        wm.selfservice.factors = SecondFactors(mailboxes.router.central, clock=clock)
    app = web.Application(middlewares=[forwarded.middleware(forwarded.networks(forwarded_trusted)),
                                       security.headers_middleware, sessions.session_middleware,
                                       sessions.csrf_middleware, sessions.errors_middleware,
                                       approval_views.badge_middleware], client_max_size=compose_views.MAX_UPLOAD_BYTES)
    app[WEBMAIL] = wm
    if approvals is not None:
        app[approval_views.APPROVALS] = approvals
    if documents is not None:
        app[documents_views.DOCUMENTS] = documents
    app[upload_views.UPLOADS] = UploadSpool(upload_dir or Path(tempfile.mkdtemp(prefix="postroom-uploads-")),
                                            clock=clock)
    if upload_dir is None:
        app.on_cleanup.append(lambda app: asyncio.to_thread(app[upload_views.UPLOADS].clear))
    app.cleanup_ctx.append(upload_views.sweeper)
    app[OPERATIONS] = operations or Operations(mailboxes, clock=clock)  # queue, DKIM, dashboard (admin)
    app[message_views.SHARED_READS] = message_views.ReadAudit()  # webmail reads of shared folders, audited
    app[admin_audit_views.VERIFIER] = admin_audit_views.Verifier(mailboxes.router.central, audit_anchor, clock)
    app[admin_sources_views.PLAIN_HTTP] = webhooks_plain_http
    app[live_views.STREAMS] = Counter()
    app[live_views.TASKS] = set()
    app.on_shutdown.append(live_views.end_streams)
    for method, path, handler in ROUTES:
        app.router.add_route(method, path, handler)
    # JSON API (issue 10 point 8); the workflow events' routes come from the composition root (issue 11)
    app.add_subapp("/api/v1", api.make_api(mailboxes, ApiTokens(mailboxes.router.central, clock=clock), api_routes))
    app.router.add_static("/static/", HERE / "static", name="static", append_version=True)
    return app
