"""The JSON API's directory routes over real HTTP: admins, department admins limited to their subtree, users refused, problems naming the field."""

from __future__ import annotations

import logging

import pytest

from mailboxes.errors import NotFound
from webmail import api_people

from .harness import Browser
from .people import Api, make_org


@pytest.fixture
def web(web_on_both):
    return web_on_both  # every test on SQLite and on PostgreSQL


@pytest.fixture
def org(web):
    return make_org(web)


@pytest.fixture(scope="module")
def shared_org(shared_web):
    return make_org(shared_web)


def _api(web, org, who: str) -> Api:
    from .openapi_check import validate_response

    return Api(web, org.tokens[who], check=validate_response)


def _fill(path: str) -> str:
    return path.replace("{address}", "h1@city.test").replace("{code}", "hr")


async def test_an_admin_creates_changes_and_resets_an_account(web, org, caplog):
    caplog.set_level(logging.INFO, logger="postroom.admin")
    api = _api(web, org, "alice@city.test")
    status, body, r = await api("POST", "/accounts", {"address": "New@City.test", "display_name": "新人",
                                                     "department": "hr", "quota_bytes": 1000})
    assert status == 201 and r.headers["Cache-Control"] == "no-store"
    acct, password = body["account"], body["password"]
    assert (acct["address"], acct["department_code"], acct["role"], acct["enabled"]) == \
        ("new@city.test", "hr", "user", True)
    assert len(password) >= 16
    assert web.run(web.mb.directory.authenticate("new@city.test", password)) is not None
    status, body, _ = await api("PATCH", "/accounts/new@city.test",
                                {"enabled": False, "quota_bytes": 5, "quota_messages": 7, "department": "fin",
                                 "role": "department_admin", "display_name": "新同事"})
    assert status == 200
    assert (body["enabled"], body["quota_bytes"], body["quota_messages"], body["department_code"],
            body["role"], body["display_name"]) == (False, 5, 7, "fin", "department_admin", "新同事")
    assert web.run(web.mb.directory.authenticate("new@city.test", password)) is None  # disabled
    for change, field in (({"enabled": False}, "enabled"), ({"role": "user"}, "role")):
        status, problem, _ = await api("PATCH", "/accounts/alice@city.test", change)
        assert (status, problem["field"]) == (403, field)  # an admin cannot lock itself out
    status, body, _ = await api("PATCH", "/accounts/new@city.test", {"enabled": True, "department": None})
    assert status == 200 and body["department_id"] is None and body["enabled"] is True
    # A reset gives a new password once and ends the account's web sessions.
    browser = Browser(web.url)
    try:
        await browser.sign_in("new@city.test", password)
        assert (await browser.get("/mail", allow_redirects=False))[0].status == 200
        status, body, r = await api("POST", "/accounts/new@city.test/password")
        assert status == 200 and r.headers["Cache-Control"] == "no-store"
        new_password = body["password"]
        assert new_password != password
        assert (await browser.get("/mail", allow_redirects=False))[0].status == 303
    finally:
        await browser.close()
    assert web.run(web.mb.directory.authenticate("new@city.test", new_password)) is not None
    entries = web.run(web.mb.directory.audit_entries(10))
    actions = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert ("alice@city.test", "account.reset_password", "new@city.test") in actions
    assert ("alice@city.test", "account.create", "new@city.test") in actions
    lines = [r.getMessage() for r in caplog.records if r.name == "postroom.admin"]
    assert len(lines) == 4 and all("alice@city.test" in line for line in lines)
    everything = " ".join(lines) + " ".join(str(e["detail"]) for e in entries)
    assert password not in everything and new_password not in everything


@pytest.mark.parametrize("body, field, status", [
    ({"address": "x@city.test", "quota_bytes": -1}, "quota_bytes", 400),
    ({"address": "x@city.test", "quota_bytes": "10"}, "quota_bytes", 400),
    ({"address": "x@city.test", "quota_messages": True}, "quota_messages", 400),
    ({"address": "x@city.test", "role": "root"}, "role", 400),
    ({"address": "not an address"}, "address", 400),
    ({"display_name": "无地址"}, "address", 400),
    ({"address": "x@city.test", "colour": "red"}, "colour", 400),
    ({"address": "x@city.test", "department": "nowhere"}, "department", 400),
    ({"address": "x@city.test", "password": "short"}, "password", 400),
    ({"address": "x@elsewhere.test"}, "address", 400),
    ({"address": "bob@city.test"}, "address", 409),
    ({"address": "pay@city.test"}, "address", 409),
])
async def test_bad_input_is_a_problem_naming_the_field(shared_web, shared_org, body, field, status):
    api = _api(shared_web, shared_org, "alice@city.test")
    before = shared_web.run(shared_web.mb.directory.list_accounts())
    got, problem, r = await api("POST", "/accounts", body)
    assert (got, r.content_type, problem["status"], problem["field"]) == (status, "application/problem+json",
                                                                          status, field)
    assert shared_web.run(shared_web.mb.directory.list_accounts()) == before  # nothing was created or changed


async def test_bad_bodies_and_paging(web, org):
    api = _api(web, org, "alice@city.test")
    status, problem, _ = await api("POST", "/accounts", raw=b"{not json")
    assert status == 400 and problem["title"] == "Bad Request"
    status, problem, _ = await api("POST", "/accounts", ["a list"])
    assert status == 400
    for query, field in (("limit=0", "limit"), ("limit=201", "limit"), ("offset=-1", "offset"),
                         ("limit=x", "limit"), ("offset=y", "offset"),
                         ("offset=" + "9" * 30, "offset")):
        status, problem, _ = await api("GET", f"/accounts?{query}")
        assert (status, problem["field"]) == (400, field)
    status, body, _ = await api("GET", "/accounts?limit=3&offset=2")
    assert status == 200 and body["total"] == 8 and len(body["items"]) == 3 and body["offset"] == 2
    status, body, _ = await api("GET", "/accounts?q=%E4%BA%BA%E4%BA%8B")  # 人事
    assert [a["address"] for a in body["items"]] == ["h1@city.test", "ha@city.test"]


async def test_an_admin_manages_departments_groups_and_aliases(web, org):
    api = _api(web, org, "alice@city.test")
    status, dept, _ = await api("POST", "/departments", {"code": "it", "name": "信息中心", "parent": "city"})
    assert status == 201 and dept["code"] == "it" and dept["parent_id"] is not None
    status, problem, _ = await api("POST", "/departments", {"code": "it", "name": "again"})
    assert (status, problem["field"]) == (409, "code")
    status, dept, _ = await api("PATCH", "/departments/it", {"name": "信息技术中心"})
    assert status == 200 and dept["name"] == "信息技术中心"
    status, body, _ = await api("GET", "/departments")
    assert {d["code"] for d in body["items"]} == {"city", "fin", "audit", "hr", "it"}
    status, group, _ = await api("POST", "/groups", {"address": "it-all@city.test", "name": "信息全体",
                                                     "department": "it", "post_policy": "members"})
    assert status == 201 and group["members"] == []
    status, group, _ = await api("POST", "/groups/it-all@city.test/members",
                                 {"add": ["f1@city.test", "H1@city.test"], "add_posters": ["bob@city.test"]})
    assert status == 200 and group["members"] == ["f1@city.test", "h1@city.test"]
    assert group["posters"] == ["bob@city.test"]
    status, group, _ = await api("POST", "/groups/it-all@city.test/members", {"remove": ["f1@city.test"]})
    assert group["members"] == ["h1@city.test"]
    status, problem, _ = await api("POST", "/groups/it-all@city.test/members", {"add": "f1@city.test"})
    assert (status, problem["field"]) == (400, "add")
    status, _, _ = await api("DELETE", "/groups/it-all@city.test")
    assert status == 204
    assert (await api("GET", "/groups/it-all@city.test"))[0] == 404
    status, alias, _ = await api("POST", "/aliases", {"address": "help@city.test", "target": "h1@city.test"})
    assert status == 201 and alias["target"] == "h1@city.test"
    status, problem, _ = await api("POST", "/aliases", {"address": "help2@city.test"})
    assert (status, problem["field"]) == (400, "target")
    assert (await api("DELETE", "/aliases/help@city.test"))[0] == 204
    assert (await api("GET", "/aliases/help@city.test"))[0] == 404
    assert web.run(web.mb.directory.resolve("help@city.test")) is None


async def test_a_department_admin_sees_and_changes_only_its_subtree(web, org):
    api = _api(web, org, "fa@city.test")
    status, body, _ = await api("GET", "/accounts?limit=50")
    assert {a["address"] for a in body["items"]} == {"fa@city.test", "f1@city.test", "a1@city.test",
                                                       "boss@city.test"}
    assert body["total"] == 4
    # Another department's ids are not found, whatever the verb.
    for method, path, payload in (("GET", "/accounts/h1@city.test", None),
                                  ("PATCH", "/accounts/h1@city.test", {"enabled": False}),
                                  ("POST", "/accounts/h1@city.test/password", None),
                                  ("GET", "/departments/hr", None),
                                  ("PATCH", "/departments/hr", {"name": "x"}),
                                  ("GET", "/groups/hr-all@city.test", None),
                                  ("POST", "/groups/hr-all@city.test/members", {"add": ["fa@city.test"]}),
                                  ("DELETE", "/groups/hr-all@city.test", None),
                                  ("GET", "/aliases/jobs@city.test", None),
                                  ("DELETE", "/aliases/jobs@city.test", None)):
        status, problem, _ = await api(method, path, payload)
        assert (method, path, status, problem["status"]) == (method, path, 404, 404)
    # What it may see but not do is forbidden, naming the field.
    for method, path, payload, field in (
            ("PATCH", "/accounts/f1@city.test", {"role": "admin"}, "role"),
            ("PATCH", "/accounts/f1@city.test", {"department": "hr"}, "department"),
            ("PATCH", "/accounts/f1@city.test", {"department": None}, "department"),
            ("PATCH", "/accounts/fa@city.test", {"role": "admin"}, "role"),
            ("PATCH", "/accounts/fa@city.test", {"role": "user"}, "role"),
            ("PATCH", "/accounts/fa@city.test", {"enabled": False}, "enabled"),
            ("POST", "/accounts", {"address": "n@city.test", "department": "hr"}, "department"),
            ("POST", "/accounts", {"address": "n@city.test", "role": "admin"}, "role"),
            ("POST", "/departments", {"code": "x", "name": "x", "parent": "hr"}, "parent"),
            ("POST", "/departments", {"code": "x", "name": "x"}, "parent"),
            ("POST", "/groups", {"address": "g@city.test", "department": "hr"}, "department"),
            ("POST", "/aliases", {"address": "a@city.test", "target": "h1@city.test"}, "target"),
            ("POST", "/aliases", {"address": "a@city.test", "target": "x@elsewhere.test"}, "target")):
        status, problem, _ = await api(method, path, payload)
        assert (method, path, status, problem.get("field")) == (method, path, 403, field)
    for method, path, payload in (("PATCH", "/accounts/boss@city.test", {"enabled": False}),
                                  ("POST", "/accounts/boss@city.test/password", None)):
        assert (await api(method, path, payload))[0] == 403  # an admin in its department is not its to manage
    assert web.run(web.mb.directory.account("h1@city.test")).enabled
    assert web.run(web.mb.directory.account("boss@city.test")).enabled
    # Within its subtree it works; new things land in its own department by default.
    status, body, _ = await api("POST", "/accounts", {"address": "f2@city.test"})
    assert status == 201 and body["account"]["department_code"] == "fin"
    status, body, _ = await api("PATCH", "/accounts/a1@city.test", {"department": "fin", "quota_bytes": 9,
                                                                   "role": "department_admin"})
    assert status == 200 and (body["department_code"], body["role"]) == ("fin", "department_admin")
    assert (await api("POST", "/accounts/f1@city.test/password"))[0] == 200
    status, body, _ = await api("GET", "/departments")
    assert [d["code"] for d in body["items"]] == ["audit", "fin"]
    status, dept, _ = await api("POST", "/departments", {"code": "tax", "name": "税务科", "parent": "fin"})
    assert status == 201
    status, group, _ = await api("POST", "/groups", {"address": "tax-all@city.test", "department": "tax"})
    assert status == 201
    status, body, _ = await api("GET", "/groups")
    assert [g["address"] for g in body["items"]] == ["fin-all@city.test", "tax-all@city.test"]
    status, body, _ = await api("GET", "/aliases")
    assert [a["address"] for a in body["items"]] == ["pay@city.test"]
    assert (await api("POST", "/aliases", {"address": "fin@city.test", "target": "f1@city.test"}))[0] == 201


async def test_a_user_token_is_refused_on_every_route(web, org):
    api = _api(web, org, "bob@city.test")
    for method, path, _ in api_people.ROUTES:
        status, problem, _ = await api(method, _fill(path), {} if method in ("POST", "PATCH") else None)
        assert (method, path, status, problem["status"]) == (method, path, 403, 403)
    assert web.run(web.mb.directory.account("h1@city.test")).enabled


async def test_api_posts_need_no_csrf_token_but_a_cookie_alone_gets_nothing(web, org, client):
    await client.sign_in()  # alice, an admin, signed in to the webmail
    r, _ = await client.post("/api/v1/accounts", {"address": "x@city.test"})
    assert r.status == 401 and r.content_type == "application/problem+json"  # not a CSRF 403: bearer only
    with pytest.raises(NotFound):
        web.run(web.mb.directory.account("x@city.test"))


async def test_a_token_limited_to_a_department_reaches_only_that_subtree(web, org):
    from mailboxes.apitokens import ApiTokens

    async def limited():
        alice = await web.mb.directory.account("alice@city.test")
        fin = [d for d in await web.mb.directory.list_departments() if d.code == "fin"][0]
        secret, _ = await ApiTokens(web.mb.router.central).create(alice.id, department_id=fin.id, label="fin only")
        return secret
    from .openapi_check import validate_response

    api = Api(web, web.run(limited()), check=validate_response)
    status, body, _ = await api("GET", "/accounts")
    assert {a["address"] for a in body["items"]} == {"fa@city.test", "f1@city.test", "a1@city.test",
                                                       "boss@city.test"}
    assert (await api("GET", "/accounts/h1@city.test"))[0] == 404
    status, problem, _ = await api("PATCH", "/accounts/f1@city.test", {"role": "admin"})
    assert (status, problem["field"]) == (403, "role")  # an admin's token limited to fin acts as fin's admin
