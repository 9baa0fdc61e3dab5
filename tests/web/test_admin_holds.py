"""The console's legal holds and retention page over real HTTP: role admin only, the CLI's path (audited), and a hold that stops an IMAP EXPUNGE."""

from __future__ import annotations

import json
import re

import pytest

from mailboxes import retention

from .harness import csrf_of
from .mails import plain_mail
from .queueing import set_role
from .test_mail import _flags, _imap


def _audit(web, prefix: str | tuple[str, ...]) -> list[dict]:
    async def go() -> list[dict]:
        await web.mb.directory.audit_buffer.flush()
        return list(reversed(await web.mb.directory.audit_entries(100)))
    return [e for e in web.run(go()) if e["action"].startswith(prefix)]


async def _admin(web, client) -> str:
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    _, page = await client.get("/admin/holds")
    return csrf_of(page)


@pytest.mark.parametrize("role", ["user", "department_admin"])
async def test_users_and_department_admins_are_forbidden(web, client, role):
    hold = web.run(web.mb.store.holds.add("case 1", actor="root@city.test", criteria={"subject": "x"}))
    set_role(web, "bob@city.test", role)
    await client.sign_in("bob@city.test")
    _, page = await client.get("/mail")
    csrf = csrf_of(page)
    r, body = await client.get("/admin/holds")
    assert r.status == 403 and "case 1" not in body
    for path, form in (("/admin/holds", {"name": "mine", "reason": "r", "account": "bob@city.test"}),
                       (f"/admin/holds/{hold.id}/lift", {"reason": "r"}),
                       ("/admin/retention", {"kind": "trash", "days": "1", "then": "delete"}),
                       ("/admin/retention/remove", {"kind": "trash"})):
        r, _ = await client.post(path, {"csrf": csrf, **form})
        assert r.status == 403, path
    assert [h.id for h in web.run(web.mb.store.holds.list())] == [hold.id]
    assert web.run(retention.list_policies(web.mb.router.central)) == []
    assert _audit(web, "hold.") == [] and _audit(web, "retention.") == []


async def test_a_hold_placed_in_the_console_stops_an_imap_expunge_until_it_is_lifted(web, client):
    web.deliver("alice", plain_mail("evidence 证据"))
    web.deliver("alice", plain_mail("routine"))
    csrf = await _admin(web, client)
    r, page = await client.post("/admin/holds", {"csrf": csrf, "name": "案件 2026-17", "reason": "纪检调查",
                                                 "account": "alice@city.test"})
    assert r.status == 200 and 'id="hold-notice"' in page and "案件 2026-17" in page
    hid = int(re.search(r'<tr id="hold-(\d+)" class="active">', page).group(1))
    imap = _imap(web)
    try:
        imap.select("INBOX")
        imap.uid("STORE", "1:2", "+FLAGS", r"(\Deleted)")
        typ, data = imap.expunge()
        assert typ == "NO" and b"[CANNOT]" in data[0] and b"#%d" % hid in data[0]
        assert sorted(_flags(imap)) == [1, 2]  # both kept
        r, page = await client.post(f"/admin/holds/{hid}/lift", {"csrf": csrf, "reason": "调查结束"})
        assert r.status == 200 and f'<tr id="hold-{hid}" class="lifted">' in page
        imap.select("INBOX")
        typ, _ = imap.expunge()
        assert typ == "OK" and _flags(imap) == {}
    finally:
        imap.logout()
    place, lift = _audit(web, "hold.")
    assert (place["action"], place["actor"], place["target"]) == ("hold.place", "alice@city.test", f"hold#{hid}")
    assert json.loads(place["detail"]) == {"name": "案件 2026-17", "kind": "account", "account": "alice@city.test",
                                               "department": "", "criteria": {}, "reason": "纪检调查", "via": "web"}
    assert (lift["action"], json.loads(lift["detail"])["reason"]) == ("hold.release", "调查结束")
    r, page = await client.post(f"/admin/holds/{hid}/lift", {"csrf": csrf, "reason": "again"})
    assert r.status == 409 and 'id="hold-problem"' in page  # lifted already
    r, _ = await client.post("/admin/holds/999/lift", {"csrf": csrf, "reason": "x"})
    assert r.status == 404


async def test_department_and_search_holds_and_refused_forms(web, client):
    web.run(web.mb.directory.add_department("finance", "财务处"))
    csrf = await _admin(web, client)
    r, page = await client.post("/admin/holds", {"csrf": csrf, "name": "audit 2026", "reason": "审计",
                                                 "department": "finance"})
    assert r.status == 200 and "部门: finance" in page
    r, page = await client.post("/admin/holds", {"csrf": csrf, "name": "contract X", "reason": "诉讼",
                                                 "subject": "合同", "since": "2026-01-01"})
    assert r.status == 200 and "“合同”" in page
    holds = web.run(web.mb.store.holds.list())
    assert [(h.kind, h.department_code, h.criteria) for h in holds] == [
        ("department", "finance", {}), ("search", None, {"subject": "合同", "since": "2026-01-01"})]
    refused = [
        ({"name": "no scope", "reason": "r"}, "a hold names"),
        ({"name": "no reason", "reason": "", "account": "alice@city.test"}, "请写明理由"),
        ({"name": "ghost", "reason": "r", "account": "ghost@city.test"}, "ghost@city.test"),
        ({"name": "bad date", "reason": "r", "since": "tomorrow"}, "YYYY-MM-DD"),
        ({"name": "", "reason": "r", "account": "alice@city.test"}, "name"),
    ]
    for form, why in refused:
        r, page = await client.post("/admin/holds", {"csrf": csrf, **form})
        assert r.status == 400 and 'id="hold-problem"' in page and why in page, form
        assert f'value="{form["name"]}"' in page  # the form keeps what was typed
    assert len(web.run(web.mb.store.holds.list())) == 2
    r, _ = await client.post("/admin/holds", {"name": "no token", "reason": "r", "account": "alice@city.test"})
    assert r.status == 403
    assert len(_audit(web, "hold.place")) == 2


async def test_retention_policies_are_set_and_removed_through_the_audited_path(web, client):
    web.run(web.mb.directory.add_department("finance", "财务处"))
    csrf = await _admin(web, client)
    r, page = await client.post("/admin/retention", {"csrf": csrf, "kind": "trash", "days": "30", "then": "delete"})
    assert r.status == 200 and 'id="ret-trash-all"' in page
    r, page = await client.post("/admin/retention", {"csrf": csrf, "kind": "sent", "days": "365", "then": "archive",
                                                     "department": "finance"})
    assert r.status == 200 and 'id="ret-sent-finance"' in page
    policies = web.run(retention.list_policies(web.mb.router.central))
    assert [(p.folder_kind, p.department_code, p.days, p.action) for p in policies] == [
        ("sent", "finance", 365, "archive"), ("trash", "", 30, "delete")]
    for form in ({"kind": "trash", "days": "0"}, {"kind": "trash", "days": "x"}, {"kind": "cellar", "days": "3"},
                 {"kind": "trash", "days": "3", "department": "nowhere"}, {"kind": "trash", "days": "3", "then": "burn"}):
        r, page = await client.post("/admin/retention", {"csrf": csrf, **form})
        assert r.status == 400 and 'id="hold-problem"' in page, form
    r, page = await client.post("/admin/retention/remove", {"csrf": csrf, "kind": "trash"})
    assert r.status == 200 and 'id="ret-trash-all"' not in page and 'id="ret-sent-finance"' in page
    r, _ = await client.post("/admin/retention/remove", {"csrf": csrf, "kind": "trash"})
    assert r.status == 404
    got = [(e["action"], e["target"], json.loads(e["detail"])) for e in _audit(web, "retention.")]
    assert got == [("retention.set", "trash", {"department": "", "days": 30, "then": "delete", "via": "web"}),
                   ("retention.set", "sent", {"department": "finance", "days": 365, "then": "archive", "via": "web"}),
                   ("retention.remove", "trash", {"department": "", "via": "web"})]
