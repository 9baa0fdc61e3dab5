"""The admin console's directory pages over real HTTP: CSRF on every POST, users refused, department admins kept to their subtree."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from webmail.views import admin_people

from .harness import PASSWORD, Browser, csrf_of
from .people import make_org


@pytest.fixture
def web(web_on_both):
    return web_on_both  # every test on SQLite and on PostgreSQL


@pytest.fixture
def org(web):
    return make_org(web)


async def _signed_in(web, address: str) -> tuple[Browser, str]:
    b = Browser(web.url)
    await b.sign_in(address, PASSWORD)
    _, page = await b.get("/admin/accounts" if address != "bob@city.test" else "/mail")
    return b, csrf_of(page)


def _fill(path: str) -> str:
    return path.replace("{address}", quote("h1@city.test")).replace("{code}", "hr")


POSTS = [path for method, path, _ in admin_people.ROUTES if method == "POST"]
GETS = [path for method, path, _ in admin_people.ROUTES if method == "GET"]


async def test_every_console_post_without_the_csrf_token_is_refused(web, org):
    b, _ = await _signed_in(web, "alice@city.test")
    try:
        for path in POSTS:
            r, _ = await b.post(_fill(path), {"enabled": "0", "name": "x", "address": "jobs@city.test",
                                              "code": "x2", "action": "add", "member": "a1@city.test"},
                                allow_redirects=False)
            assert (path, r.status) == (path, 403)
    finally:
        await b.close()
    h1 = web.run(web.mb.directory.account("h1@city.test"))
    assert h1.enabled and h1.display_name == "人事一"
    assert [a for a, _ in web.run(web.mb.directory.list_aliases())] == ["jobs@city.test", "pay@city.test"]


async def test_a_user_gets_403_on_every_console_page_and_post(web, org):
    b, csrf = await _signed_in(web, "bob@city.test")
    try:
        _, page = await b.get("/mail")
        assert 'id="nav-admin"' not in page
        for path in GETS:
            r, _ = await b.get(_fill(path), allow_redirects=False)
            assert (path, r.status) == (path, 403)
        for path in POSTS:
            r, _ = await b.post(_fill(path), {"csrf": csrf, "enabled": "0", "address": "jobs@city.test"},
                                allow_redirects=False)
            assert (path, r.status) == (path, 403)
    finally:
        await b.close()
    anonymous = Browser(web.url)
    try:
        r, _ = await anonymous.get("/admin/accounts", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login"
    finally:
        await anonymous.close()
    assert web.run(web.mb.directory.account("h1@city.test")).enabled


async def test_an_admin_creates_searches_pages_and_changes_accounts(web, org):
    async def many():
        for i in range(55):
            await web.mb.directory.add_account(f"p{i:02d}@city.test", password=None, display_name=f"人员{i}")
    web.run(many())
    b, csrf = await _signed_in(web, "alice@city.test")
    try:
        r, page = await b.get("/admin", allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/admin/accounts"
        _, page = await b.get("/admin/accounts")
        assert 'id="nav-admin"' in page and 'data-address="a1@city.test"' in page and "共 63 条" in page
        assert 'id="admin-next"' in page and 'id="admin-prev"' not in page
        _, page = await b.get("/admin/accounts?offset=50")
        assert 'data-address="zhang' not in page and 'data-address="p54@city.test"' in page
        assert 'id="admin-prev"' in page and 'id="admin-next"' not in page
        _, page = await b.get("/admin/accounts?q=" + quote("人事"))
        assert 'data-address="h1@city.test"' in page and 'data-address="f1@city.test"' not in page
        r, page = await b.post("/admin/accounts", {"csrf": csrf, "address": "new@city.test", "display_name": "新人",
                                                   "department": "hr", "role": "user", "quota_mb": "2",
                                                   "quota_messages": "0", "password": ""})
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store" and 'id="admin-password"' in page
        password = page.split('id="admin-password">', 1)[1].split("<", 1)[0]
        acct = web.run(web.mb.directory.authenticate("new@city.test", password))
        assert acct.department_code == "hr" and acct.quota_bytes == 2 * 1024 * 1024
        r, page = await b.post("/admin/accounts", {"csrf": csrf, "address": "new@city.test", "quota_mb": "x",
                                                   "quota_messages": "0"})
        assert r.status == 400 and 'id="admin-error"' in page and "容量配额" in page
        assert "须为不小于 0 的整数" in page and "must be" not in page  # the reason in the page's language
        assert 'id="na-quota" name="quota_mb" min="0" value="x" aria-invalid="true"' in page
        r, page = await b.post("/admin/accounts", {"csrf": csrf, "address": "new@city.test", "quota_mb": "0",
                                                   "quota_messages": "0"})
        assert r.status == 409 and "已存在" in page
        # The account page: change, disable, reset.
        r, page = await b.post("/admin/accounts/new@city.test",
                               {"csrf": csrf, "display_name": "新同事", "department": "fin", "role": "user",
                                "quota_mb": "5", "quota_messages": "100"})
        assert r.status == 200 and 'id="admin-saved"' in page and 'value="新同事"' in page
        acct = web.run(web.mb.directory.account("new@city.test"))
        assert (acct.department_code, acct.quota_bytes, acct.quota_messages) == ("fin", 5 * 1024 * 1024, 100)
        r, page = await b.post("/admin/accounts/new@city.test/enabled", {"csrf": csrf, "enabled": "0"})
        assert "已停用" in page and not web.run(web.mb.directory.account("new@city.test")).enabled
        r, page = await b.post("/admin/accounts/new@city.test/enabled", {"csrf": csrf, "enabled": "1"})
        assert web.run(web.mb.directory.account("new@city.test")).enabled
        r, page = await b.post("/admin/accounts/new@city.test/password", {"csrf": csrf})
        assert r.headers["Cache-Control"] == "no-store"
        new_password = page.split('id="admin-password">', 1)[1].split("<", 1)[0]
        assert web.run(web.mb.directory.authenticate("new@city.test", new_password)) is not None
        _, page = await b.get("/admin/accounts/new@city.test")
        assert new_password not in page  # shown once
    finally:
        await b.close()


async def test_an_admin_manages_departments_groups_and_aliases(web, org):
    b, csrf = await _signed_in(web, "alice@city.test")
    try:
        r, page = await b.post("/admin/departments", {"csrf": csrf, "code": "it", "name": "信息中心",
                                                      "parent": "city", "kind": "department"})
        assert r.status == 200 and 'data-code="it"' in page
        r, page = await b.post("/admin/departments/it", {"csrf": csrf, "name": "信息技术中心"})
        assert 'value="信息技术中心"' in page
        r, page = await b.post("/admin/groups", {"csrf": csrf, "address": "it-all@city.test", "name": "信息全体",
                                                 "department": "it", "post_policy": "members"})
        assert r.url.path == "/admin/groups/it-all@city.test" and 'id="group-title"' in page
        r, page = await b.post("/admin/groups/it-all@city.test/members",
                               {"csrf": csrf, "action": "add", "kind": "members", "member": "f1@city.test"})
        assert 'data-address="f1@city.test"' in page
        r, page = await b.post("/admin/groups/it-all@city.test/members",
                               {"csrf": csrf, "action": "add", "kind": "posters", "member": "not an address"})
        assert r.status == 400 and 'aria-invalid="true"' in page
        r, page = await b.post("/admin/groups/it-all@city.test/members",
                               {"csrf": csrf, "action": "remove", "kind": "members", "member": "f1@city.test"})
        assert web.run(web.mb.directory.group("it-all@city.test")).members == ()
        r, page = await b.post("/admin/groups/it-all@city.test/delete", {"csrf": csrf})
        assert r.url.path == "/admin/groups" and "it-all@city.test" not in page
        r, page = await b.post("/admin/aliases", {"csrf": csrf, "address": "help@city.test", "target": "h1@city.test"})
        assert 'data-address="help@city.test"' in page
        r, page = await b.post("/admin/aliases/delete", {"csrf": csrf, "address": "help@city.test"})
        assert 'data-address="help@city.test"' not in page
        b.session.cookie_jar.update_cookies({"postroom-lang": "en"})
        _, page = await b.get("/admin/groups")
        assert "Admin console" in page and "New group" in page and 'lang="en"' in page
    finally:
        await b.close()


async def test_a_department_admin_is_kept_to_its_subtree(web, org):
    b, csrf = await _signed_in(web, "fa@city.test")
    try:
        _, page = await b.get("/admin/accounts")
        assert 'data-address="a1@city.test"' in page and 'data-address="h1@city.test"' not in page
        assert '<option value="admin"' not in page and '<option value="hr"' not in page
        for path in ("/admin/accounts/h1@city.test", "/admin/groups/hr-all@city.test"):
            assert (await b.get(path, allow_redirects=False))[0].status == 404
        for path, data in (("/admin/accounts/h1@city.test", {"display_name": "x", "department": "hr", "role": "user",
                                                             "quota_mb": "0", "quota_messages": "0"}),
                           ("/admin/accounts/h1@city.test/enabled", {"enabled": "0"}),
                           ("/admin/accounts/h1@city.test/password", {}),
                           ("/admin/departments/hr", {"name": "x"}),
                           ("/admin/groups/hr-all@city.test/members", {"action": "add", "kind": "members",
                                                                       "member": "fa@city.test"}),
                           ("/admin/groups/hr-all@city.test/delete", {}),
                           ("/admin/aliases/delete", {"address": "jobs@city.test"})):
            r, _ = await b.post(path, {"csrf": csrf, **data}, allow_redirects=False)
            assert (path, r.status) == (path, 404)
        r, page = await b.post("/admin/accounts/f1@city.test", {"csrf": csrf, "display_name": "钱一",
                                                                 "department": "fin", "role": "admin",
                                                                 "quota_mb": "0", "quota_messages": "0"})
        assert r.status == 403 and "无权执行此操作" in page and 'id="ac-role" name="role" aria-invalid="true"' in page
        r, page = await b.post("/admin/accounts/f1@city.test", {"csrf": csrf, "display_name": "钱一",
                                                                 "department": "hr", "role": "user",
                                                                 "quota_mb": "0", "quota_messages": "0"})
        assert r.status == 403
        r, page = await b.post("/admin/accounts/boss@city.test/enabled", {"csrf": csrf, "enabled": "0"})
        assert r.status == 403
        r, page = await b.post("/admin/accounts", {"csrf": csrf, "address": "n@city.test", "department": "hr",
                                                   "role": "user", "quota_mb": "0", "quota_messages": "0"})
        assert r.status == 403
        r, page = await b.post("/admin/aliases", {"csrf": csrf, "address": "x@city.test", "target": "h1@city.test"})
        assert r.status == 403
        _, page = await b.get("/admin/departments")
        assert 'data-code="fin"' in page and 'data-code="audit"' in page and 'data-code="hr"' not in page
        _, page = await b.get("/admin/aliases")
        assert 'data-address="pay@city.test"' in page and "jobs@city.test" not in page
        r, page = await b.post("/admin/accounts/a1@city.test/enabled", {"csrf": csrf, "enabled": "0"})
        assert r.status == 200 and not web.run(web.mb.directory.account("a1@city.test")).enabled
    finally:
        await b.close()
    h1 = web.run(web.mb.directory.account("h1@city.test"))
    assert h1.enabled and h1.display_name == "人事一"
    assert web.run(web.mb.directory.account("boss@city.test")).enabled
    assert web.run(web.mb.directory.account("f1@city.test")).role.value == "user"


def test_every_label_the_console_builds_from_a_value_exists_in_both_locales():
    from mailboxes.directory import DEPARTMENT_KINDS, POST_POLICIES
    from webmail import i18n
    from webmail.adminops import ROLES, AdminError

    keys = ([f"adm_role_{r}" for r in ROLES] + [f"adm_kind_{k}" for k in DEPARTMENT_KINDS]
            + [f"adm_policy_{p}" for p in POST_POLICIES]
            + [f"adm_error_{cls.status}" for cls in (AdminError, *AdminError.__subclasses__())])
    for locale in i18n.LOCALES:
        assert set(keys) <= set(i18n.MESSAGES[locale])


def test_every_refusal_the_console_can_show_has_its_reason_in_both_locales():
    """Each AdminError key raised in adminops has a catalogue entry in zh and en, formatted with its params."""
    import ast
    import inspect

    from webmail import adminops, i18n

    calls = [n for n in ast.walk(ast.parse(inspect.getsource(adminops))) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") in ("Invalid", "Forbidden", "Conflict")]
    keyed = {kw.value.value: {k.arg for k in c.keywords if k.arg != "key"}
             for c in calls for kw in c.keywords if kw.arg == "key"}
    assert len(keyed) >= 15
    for locale in i18n.LOCALES:
        for key, params in keyed.items():
            i18n.MESSAGES[locale][f"adm_msg_{key}"].format(**{p: "x" for p in params})


async def test_a_big_groups_members_are_paged_and_searchable(web, org):
    """A group of the whole bureau is shown 50 members at a time, with a search by address."""
    members = [f"m{i:03d}@city.test" for i in range(120)]
    web.run(web.mb.directory.add_group("all@city.test", "全体", department="fin"))
    web.run(web.mb.directory.set_group_members("all@city.test", add=members))
    b, _ = await _signed_in(web, "alice@city.test")
    try:
        _, page = await b.get("/admin/groups/all@city.test")
        shown = [m for m in members if f'data-address="{m}"' in page]
        assert shown == members[:50] and 'id="admin-next"' in page and 'id="admin-prev"' not in page
        _, page = await b.get("/admin/groups/all@city.test?offset=100")
        assert [m for m in members if f'data-address="{m}"' in page] == members[100:]
        assert 'id="admin-next"' not in page and 'id="admin-prev"' in page
        _, page = await b.get("/admin/groups/all@city.test?q=m11")
        assert [m for m in members if f'data-address="{m}"' in page] == members[110:120]
    finally:
        await b.close()
