"""Security checks over every route of the webmail, found by walking app.ROUTES: CSRF, other accounts' ids, session fixation, cookie flags.

The walks read the route table itself, so a route added later is covered (or makes these
tests fail until someone says how it is covered).
"""

from __future__ import annotations

import json
import re

import aiohttp
from sqlalchemy import select

from mailboxes import schema as t
from webmail import security
from webmail.app import ROUTES

from .harness import PASSWORD, Browser, WebServer, csrf_of
from .mails import gbk_mail, plain_mail

SAFE = security.SAFE_METHODS
# Paths that take no CSRF token, and why that is safe; a new exemption must be added here with its reason.
EXEMPT_BY_DESIGN = {
    **{p: "Outlook Autodiscover: a mail client's question, reads no session, changes nothing"
       for p in security.AUTODISCOVER_PATHS},
    "/.well-known/carddav": "RFC 6764 redirect, reads no session",
    "/carddav": "CardDAV: HTTP Basic only, never the cookie; read-only (writes 403)",
    "/carddav/{tail:.*}": "CardDAV: HTTP Basic only, never the cookie; read-only (writes 403)",
}
# Every route that names a message, folder or other per-account object, and where "another account's id
# gives 404" is tested; routes that take no object id say so. A new route must be added to one of them.
OBJECT_ROUTES = {
    ("GET", "/mail"): "here", ("GET", "/message"): "here", ("GET", "/message/body"): "here",
    ("GET", "/message/part"): "here", ("POST", "/message/action"): "here", ("GET", "/compose"): "here",
    ("POST", "/compose"): "here", ("POST", "/compose/draft"): "here",
    ("POST", "/settings/app-passwords/revoke"): "here",
    ("GET", "/readstatus/{id}"): "tests.web.test_readstatus:test_other_accounts_get_404_for_status_and_recall",
    ("POST", "/readstatus/{id}/recall"):
        "tests.web.test_readstatus:test_other_accounts_get_404_for_status_and_recall",
    ("POST", "/settings/rules/change"):
        "tests.web.test_mailsettings:test_rule_ids_of_another_account_are_404_and_forms_need_csrf",
    ("POST", "/compose/upload/remove"): "tests.web.test_uploads:test_another_accounts_upload_id_is_not_found",
    # The admin console names other accounts by design; who may reach which is its role check.
    **{(m, p): "tests.web.test_admin_people:test_a_department_admin_is_kept_to_its_subtree"
       for m, p in (("GET", "/admin/accounts/{address}"), ("POST", "/admin/accounts/{address}"),
                    ("POST", "/admin/accounts/{address}/enabled"), ("POST", "/admin/accounts/{address}/password"),
                    ("POST", "/admin/departments/{code}"), ("GET", "/admin/groups/{address}"),
                    ("POST", "/admin/groups/{address}/members"), ("POST", "/admin/groups/{address}/delete"),
                    ("POST", "/admin/aliases/delete"))},
    ("POST", "/admin/queue/action"): "tests.web.test_admin_queue:test_users_and_department_admins_are_forbidden",
    ("POST", "/admin/departments/{code}/leader"):
        "tests.web.test_approvers:test_only_an_administrator_names_a_leader_in_the_console_and_the_api",
    # Holds are the installation's (no account owns one); who may lift one is the role check.
    ("POST", "/admin/holds/{id}/lift"): "tests.web.test_admin_holds:test_users_and_department_admins_are_forbidden",
    # Workflow sources and webhooks are the installation's, named in the form; who may change one is the role check.
    **{("POST", p): "tests.web.test_admin_sources:test_users_and_department_admins_are_forbidden"
       for p in ("/admin/sources/token", "/admin/sources/revoke", "/admin/sources/revoke-token", "/admin/webhooks",
                 "/admin/webhooks/remove")},
    **{(m, p): "tests.web.test_approvals:test_only_approvers_decide_and_each_decision_is_taken_once"
       for m, p in (("GET", "/approvals"), ("GET", "/approvals/{id}"),
                    ("POST", "/approvals/{id}/{decision:approve|reject}"))},
    # official documents: ids of unknown documents and of another dispatcher's are 404; role checks 403
    **{(m, p): "tests.web.test_documents_pages:test_who_may_see_which_pages_and_ids_of_others_are_not_found"
       for m, p in (("GET", "/documents/incoming/{id}"), ("GET", "/documents/incoming/{id}/files/{n}"),
                    ("POST", "/documents/incoming/{id}/sign"), ("GET", "/documents/sent/{id}"))},
}
NO_OBJECT_ID = {
    "/", "/login", "/logout", "/logout-everywhere", "/lang", "/events", "/login/code", "/settings/two-factor",
    "/settings/two-factor/begin", "/settings/two-factor/qr.svg", "/settings/two-factor/confirm",
    "/settings/two-factor/disable", "/settings/two-factor/recovery", "/settings/password",
    "/settings/app-passwords", "/settings/mail-client", "/settings/mail-client/postroom.mobileconfig",
    "/.well-known/autoconfig/mail/config-v1.1.xml", "/mail/config-v1.1.xml", "/settings/mail",
    "/settings/out-of-office", "/settings/rules", "/settings/signature", "/addressbook", "/addressbook/complete",
    "/compose", "/settings/notifications",  # the signed-in account's own notification choices
    "/compose/upload",  # makes a new upload of the signed-in account
    # console pages without an object id in the path (lists, create forms); role-checked in their tests
    "/admin", "/admin/accounts", "/admin/departments", "/admin/groups", "/admin/aliases", "/admin/queue",
    "/admin/dkim", "/admin/dkim/generate", "/admin/dashboard",
    "/documents/incoming", "/documents/sent",  # lists; who may see them: test_documents_pages
    # the audit log, legal holds and retention: role admin only (tests.web.test_admin_audit, test_admin_holds)
    "/admin/audit", "/admin/audit/export", "/admin/audit/verify", "/admin/holds", "/admin/retention",
    "/admin/retention/remove",
    "/admin/sources",  # the list and the form that adds a source: role admin only (tests.web.test_admin_sources)
    *security.AUTODISCOVER_PATHS, *EXEMPT_BY_DESIGN,
}


def _concrete(path: str) -> str:
    """A request path for a route template: every {name} or {name:regex} filled with a plausible value."""
    return re.sub(r"\{[^}]*\}", "1", path)


def _exempt(path: str) -> bool:
    return path in security.CSRF_EXEMPT_PATHS or path.startswith(security.CSRF_EXEMPT_PREFIX)


async def _snapshot(web) -> dict[str, list]:
    """Every row of every table (sessions by id only: their last-seen time may move), to show nothing changed."""
    async def read():
        out = {}
        async with web.mb.router.central.read() as conn:
            for table in (*t.directory_metadata.sorted_tables, *t.mail_metadata.sorted_tables):
                cols = [table.c.id] if table is t.web_sessions else list(table.c)
                out[table.name] = sorted(map(tuple, (await conn.execute(select(*cols))).all()), key=repr)
        return out
    return await web.loop_run(read())


def test_the_route_tables_of_this_module_name_every_route():
    for method, path, _handler in ROUTES:
        if (method, path) not in OBJECT_ROUTES and path not in NO_OBJECT_ID:
            raise AssertionError(f"{method} {path}: add it to OBJECT_ROUTES (with its cross-account test) "
                                 f"or NO_OBJECT_ID in {__name__}")
        if method not in SAFE and _exempt(path) and path not in EXEMPT_BY_DESIGN:
            raise AssertionError(f"{method} {path} skips the CSRF check: say why in EXEMPT_BY_DESIGN")
    for where in set(OBJECT_ROUTES.values()) - {"here"}:
        module, name = where.split(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name)), where


async def test_every_state_changing_route_refuses_a_request_without_this_sessions_token(web, client):
    web.deliver("alice", plain_mail("keep me unflagged"))
    await web.loop_run(web.mb.directory.add_app_password("alice@city.test", "phone"))
    _, page = await client.sign_in()
    token = csrf_of(page)
    other = Browser(web.url)
    signed_out = Browser(web.url)
    try:
        _, other_page = await other.sign_in("bob@city.test")
        foreign = csrf_of(other_page)  # a valid token, of another session
        before = await _snapshot(web)
        form = {"folder": "INBOX", "uid": "1", "do": "flag", "id": "1", "lang": "en", "label": "x",
                "current": PASSWORD, "new": "n3w-Passw0rd!x", "again": "n3w-Passw0rd!x", "to": "bob@city.test",
                "subject": "csrf", "body": "csrf", "mode": "new", "enabled": "on", "text": "sig", "rule": "1",
                "op": "delete", "field": "from", "value": "x", "action": "seen", "code": "123456", "proof": PASSWORD}
        checked = []
        for method, template, _handler in ROUTES:
            if method in SAFE:
                continue
            path = _concrete(template)
            if _exempt(path):
                if path.startswith("/carddav"):  # the session cookie alone opens nothing there
                    r, _ = await client.post(path, form, allow_redirects=False)
                    assert r.status in (401, 403), (path, r.status)
                continue
            attempts = [
                ("no token", client, {"data": form}),
                ("empty token", client, {"data": {**form, "csrf": ""}}),
                ("wrong token", client, {"data": {**form, "csrf": token[:-2] + "00"}}),
                ("other session's token", client, {"data": {**form, "csrf": foreign}}),
                ("wrong header", client, {"data": form, "headers": {security.CSRF_HEADER: "forged"}}),
                ("json body", client, {"data": json.dumps({**form, "csrf": token}),
                                       "headers": {"Content-Type": "application/json"}}),
                ("multipart, wrong token", client, {"data": _multipart({**form, "csrf": "forged"})}),
                ("signed out", signed_out, {"data": form}),
            ]
            for what, browser, kw in attempts:
                methods = ("POST",) if method == "POST" else ("POST", "PUT", "DELETE", "PATCH")
                for m in methods:
                    async with browser.session.request(m, browser.base + path, allow_redirects=False, **kw) as r:
                        assert r.status == 403, (m, path, what, r.status)
            checked.append(path)
        assert await _snapshot(web) == before  # nothing refused changed anything
        assert {"/logout", "/message/action", "/compose", "/settings/password"} <= set(checked)
        assert len(checked) == len([1 for m, p, _ in ROUTES if m not in SAFE and not _exempt(_concrete(p))])
        # The control: the same request with the session's token does what it says.
        r, _ = await client.post("/message/action", {**form, "csrf": token}, allow_redirects=False)
        assert r.status == 303
        assert await _snapshot(web) != before
    finally:
        await other.close()
        await signed_out.close()


def _multipart(fields: dict[str, str]) -> aiohttp.FormData:
    f = aiohttp.FormData()
    for k, v in fields.items():
        f.add_field(k, v)
    return f


async def test_the_json_api_ignores_the_session_cookie(web, client):
    """/api/v1 takes bearer tokens only: a signed-in browser's cookie opens nothing there (so no CSRF to ride)."""
    await client.sign_in()
    r, _ = await client.get("/api/v1/accounts")
    assert r.status == 401


async def _bobs_state(web) -> list:
    """Bob's messages as (folder, uid, flags) and his app passwords."""
    async def read():
        bob = web.accounts["bob"]
        out = []
        for f in await web.mb.store.folders(bob):
            out += [(f.name, m.uid, m.flags) for m in await web.mb.store.messages(f.ref)]
        return sorted(out), await web.mb.directory.list_app_passwords("bob@city.test")
    return await web.loop_run(read())


async def test_another_accounts_ids_give_404_on_every_message_and_folder_route(web, client):
    web.deliver("bob", gbk_mail(to="bob@city.test"))  # bob's INBOX uid 1: 关于第三季度报告的通知
    web.deliver("bob", plain_mail("bob's draft 草稿", to="carol@city.test"), folder="Drafts")
    web.deliver("alice", plain_mail("alice's own"))  # so uid 1 exists in alice's INBOX too
    app_id = (await web.loop_run(web.mb.directory.add_app_password("bob@city.test", "phone"))).split("-", 1)[0]
    bob_draft_uid = "1"
    before = await _bobs_state(web)
    _, page = await client.sign_in()
    token = csrf_of(page)
    secrets = ("关于", "draft 草稿")
    others = ("Shared/bob/INBOX", "Other Users/bob/INBOX", "bob@city.test/INBOX", "../bob/INBOX", "user/bob/INBOX",
              "#shared/bob/INBOX", "~bob/INBOX", "Shared/bob/Drafts")
    # Bob's draft by its uid (before alice has drafts of her own): alice's Drafts has no such message,
    # and bob's is never reached.
    r, body = await client.get("/compose", params={"draft": bob_draft_uid}, allow_redirects=False)
    assert r.status == 404 and "draft 草稿" not in body
    for path in ("/compose", "/compose/draft"):
        r, body = await client.post(path, {"csrf": token, "mode": "new", "to": "alice@city.test", "cc": "",
                                           "subject": "s", "body": "b", "draft_uid": bob_draft_uid},
                                    allow_redirects=False)
        assert r.status == 404 and "draft 草稿" not in body, path
    tried = set()
    for folder in others:
        for path, query in (("/mail", {"folder": folder}), ("/message", {"folder": folder, "uid": "1"}),
                            ("/message/body", {"folder": folder, "uid": "1"}),
                            ("/message/part", {"folder": folder, "uid": "1", "part": "2"}),
                            *(("/compose", {"mode": m, "folder": folder, "uid": "1"})
                              for m in ("reply", "replyall", "forward"))):
            r, body = await client.get(path, params=query, allow_redirects=False)
            assert r.status in (400, 404) and not any(s in body for s in secrets), (path, query, r.status)
            tried.add(("GET", path))
        for do, extra in (("flag", {}), ("unflag", {}), ("read", {}), ("unread", {}), ("delete", {}),
                          ("move", {"to": "INBOX"}), ("move", {"to": "Archive"})):
            r, _ = await client.post("/message/action", {"csrf": token, "folder": folder, "uid": "1", "do": do,
                                                         **extra}, allow_redirects=False)
            assert r.status in (400, 404), (folder, do, r.status)
            tried.add(("POST", "/message/action"))
        compose = {"csrf": token, "mode": "forward", "to": "alice@city.test", "cc": "", "subject": "Fwd",
                   "body": "x", "source_folder": folder, "source_uid": "1"}
        r, body = await client.post("/compose", compose, allow_redirects=False)
        assert r.status in (400, 404) and not any(s in body for s in secrets), (folder, r.status)
        # Saving a draft never opens its source (the original is attached at send, checked above): it
        # stores alice's own fields, so it may succeed, but reads and changes nothing of bob's.
        r, body = await client.post("/compose/draft", compose, allow_redirects=False)
        assert r.status in (303, 400, 404) and not any(s in body for s in secrets), (folder, r.status)
        tried.update({("POST", "/compose"), ("POST", "/compose/draft")})
    r, _ = await client.post("/settings/app-passwords/revoke", {"csrf": token, "id": app_id}, allow_redirects=False)
    assert r.status == 404
    tried.add(("POST", "/settings/app-passwords/revoke"))
    assert tried == {k for k, v in OBJECT_ROUTES.items() if v == "here"}
    assert await _bobs_state(web) == before  # nothing of bob's was read as seen, flagged, moved or removed
    r, page = await client.get("/mail", params={"folder": "INBOX"})
    assert "alice&#39;s own" in page or "alice's own" in page  # alice's own mail is still hers to see


async def test_a_session_planted_before_sign_in_never_becomes_the_signed_in_one(web, client):
    """Session fixation: neither an unknown planted secret, nor an attacker's own live session, nor a planted
    pre-sign-in token survives sign-in; the attacker's cookie never becomes the victim's session."""
    attacker = Browser(web.url)
    try:
        await attacker.sign_in("bob@city.test")
        bobs = {c.key: c.value for c in attacker.session.cookie_jar}["postroom-session"]
        for planted in ("A" * 43, bobs):
            victim = Browser(web.url)
            try:
                victim.session.cookie_jar.update_cookies({"postroom-session": planted, "postroom-pre": "B" * 43})
                _, page = await victim.get("/login")
                if planted == bobs:  # the planted live session is bob's: the victim signs out first, as a user would
                    await victim.post("/logout", {"csrf": csrf_of(page)})
                    victim.session.cookie_jar.update_cookies({"postroom-session": planted, "postroom-pre": "B" * 43})
                    _, page = await victim.get("/login")
                r, page = await victim.sign_in()
                jar = {c.key: c.value for c in victim.session.cookie_jar}
                assert r.status == 200 and "alice@city.test" in page
                assert jar["postroom-session"] not in (planted, bobs)
                assert csrf_of(page) != "B" * 43  # the signed-in token is the new session's, not the planted one
                # The planted value signs nobody in as alice.
                probe = Browser(web.url)
                try:
                    probe.session.cookie_jar.update_cookies({"postroom-session": planted})
                    r, page = await probe.get("/mail", allow_redirects=False)
                    assert r.status == 303 or "alice@city.test" not in page, planted[:8]
                finally:
                    await probe.close()
            finally:
                await victim.close()
    finally:
        await attacker.close()


def _cookies(responses) -> list[str]:
    return [h for resp in responses for h in resp.headers.getall("Set-Cookie", [])]


async def test_every_cookie_the_webmail_sets_is_httponly_samesite_and_over_tls_secure(tmp_path):
    srv = WebServer(tmp_path, https=True).start()
    try:
        for base, tls in ((srv.url, False), (srv.https_url, True)):
            b = Browser(base)
            seen = []
            try:
                r, page = await b.get("/login")
                seen += [*r.history, r]
                r, page = await b.sign_in()
                seen += [*r.history, r]
                r, page = await b.post("/lang", {"csrf": csrf_of(page), "lang": "en", "back": "/mail"})
                seen += [*r.history, r]
                r, _ = await b.post("/logout", {"csrf": csrf_of(page)})
                seen += [*r.history, r]
            finally:
                await b.close()
            cookies = _cookies(seen)
            names = {c.split("=", 1)[0] for c in cookies}
            prefix = "__Host-" if tls else ""
            assert {prefix + "postroom-session", prefix + "postroom-pre"} <= names, names
            for cookie in cookies:
                name = cookie.split("=", 1)[0]
                flags = {f.strip().lower().split("=")[0]: f.strip().lower() for f in cookie.split(";")[1:]}
                assert "httponly" in flags and flags.get("samesite") in ("samesite=lax", "samesite=strict"), cookie
                assert flags.get("path") == "path=/" and "domain" not in flags, cookie
                assert ("secure" in flags) == tls and name.startswith(prefix), cookie
    finally:
        srv.stop()
