"""The console's audit log page over real HTTP: role admin only, the CLI's filters, keyset paging, CSV export, chain verification, itself audited."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import threading
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from mailboxes import auditlog

from .harness import csrf_of
from .queueing import set_role

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=timezone.utc)


def _seed(web, entries: list[tuple]) -> None:
    """Append (at, actor, action, target, detail-dict) entries to the chain, in one transaction."""
    async def go() -> None:
        async with web.mb.router.central.write() as conn:
            await auditlog.append_many(conn, [(at, actor, action, target, json.dumps(d, ensure_ascii=False))
                                              for at, actor, action, target, d in entries])
    web.run(go())


def _entries(web, prefix: str = "audit.") -> list[dict]:
    async def go() -> list[dict]:
        await web.mb.directory.audit_buffer.flush()
        return list(reversed(await web.mb.directory.audit_entries(500, activity=True)))
    return [e for e in web.run(go()) if e["action"].startswith(prefix)]


def _seqs(page: str) -> list[int]:
    return [int(s) for s in re.findall(r'<tr id="aud-(\d+)"', page)]


async def test_signed_out_visitors_go_to_the_sign_in_page(web, client):
    for path in ("/admin/audit", "/admin/audit/export"):
        r, _ = await client.get(path, allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (303, "/login"), path


@pytest.mark.parametrize("role", ["user", "department_admin"])
async def test_users_and_department_admins_are_forbidden(web, client, role):
    """Department admins see no slice of the log: its entries name every department's people (module docstring)."""
    set_role(web, "bob@city.test", role)
    await client.sign_in("bob@city.test")
    _, page = await client.get("/mail")
    assert 'href="/admin/audit"' not in page
    for path in ("/admin/audit", "/admin/audit?actor=bob@city.test", "/admin/audit/export"):
        r, body = await client.get(path)
        assert r.status == 403 and "seq,at,actor" not in body, path
    r, _ = await client.post("/admin/audit/verify", {"csrf": csrf_of(page)})
    assert r.status == 403
    assert _entries(web) == []  # nothing was viewed, exported or verified


async def test_an_admin_searches_by_actor_action_target_text_and_time(web, client):
    _seed(web, [
        (T0, "wang@city.test", "login.failed", "imap", {"ip": "10.0.0.1"}),
        (T0 + timedelta(days=1), "li@city.test", "account.disable", "zhao@city.test", {"why": "离职 Departure"}),
        (T0 + timedelta(days=2), "wang@city.test", "message.sent", "<m1@city.test>", {"rcpts": 3}),
        (T0 + timedelta(days=3), "li@city.test", "hold.place", "hold#1", {"name": "合同 case 100%"}),
    ])
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()

    async def found(**query) -> list[str]:
        r, page = await client.get("/admin/audit", params=query)
        assert r.status == 200
        return [a for a in re.findall(r"<td data-label=\"[^\"]*\"><code>([^<]*)</code></td>", page)
                if a in ("login.failed", "account.disable", "message.sent", "hold.place")]
    assert await found(actor="wang@city.test") == ["message.sent", "login.failed"]  # newest first
    assert await found(action="account.disable") == ["account.disable"]
    assert await found(target="hold#1") == ["hold.place"]
    assert await found(text="离职") == ["account.disable"]  # in the detail, Chinese
    assert await found(text="DEPARTURE") == ["account.disable"]  # case-insensitive
    assert await found(text="100%") == ["hold.place"]
    assert await found(text="1%") == []  # LIKE wildcards in the text are literal
    assert await found(text="zhao@") == ["account.disable"]  # in the target
    assert await found(since="2026-11-02", until="2026-11-04") == ["message.sent", "account.disable"]  # until: before
    assert await found(since="2026-11-02", until="2026-11-04 08:00:01") == ["hold.place", "message.sent",
                                                                           "account.disable"]
    assert await found(since="2026-11-02T08:00:01") == ["hold.place", "message.sent"]
    assert await found(actor="li@city.test", since="2026-11-03") == ["hold.place"]
    r, page = await client.get("/admin/audit", params={"since": "yesterday"})
    assert r.status == 200 and 'id="aud-bad"' in page and 'aria-invalid="true"' in page and not _seqs(page)
    r, _ = await client.get("/admin/audit", params={"actor": "x" * 600})
    assert r.status == 200
    views = _entries(web, "audit.view")
    assert views[0]["actor"] == "alice@city.test" and json.loads(views[0]["detail"])["search"] == {
        "actor": "wang@city.test"}
    assert len(views) == 12  # every page shown was audited; the two refused searches showed nothing


async def test_pages_are_keyset_paged_newest_first_and_cover_every_entry_once(web, client):
    _seed(web, [(T0 + timedelta(minutes=i), "robot@city.test", "test.step", f"t{i}", {"i": i}) for i in range(120)])
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    seen: list[int] = []
    r, page = await client.get("/admin/audit?action=test.step")
    assert 'id="aud-newest"' not in page
    while True:
        seen += _seqs(page)
        m = re.search(r'<a href="([^"]+)" id="aud-older">', page)
        if not m:
            break
        url = m.group(1).replace("&amp;", "&")
        assert "before=" in url and "action=test.step" in url
        r, page = await client.get(url)
        assert r.status == 200 and 'id="aud-newest"' in page
    assert len(seen) == 120 and seen == sorted(seen, reverse=True) and len(set(seen)) == 120
    r, page = await client.get("/admin/audit?before=abc")  # a bad cursor is the first page, not an error
    assert r.status == 200 and len(_seqs(page)) == 50


async def test_the_csv_export_streams_the_search_oldest_first_in_the_clis_columns(web, client):
    n = 2600  # more than two export batches
    _seed(web, [(T0 + timedelta(seconds=i), "robot@city.test" if i % 2 else "人@city.test", "test.step",
                 f"t{i}", {"i": i, "note": "说明, \"quoted\""}) for i in range(n)])
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    r, body = await client.download("/admin/audit/export?actor=%E4%BA%BA%40city.test")
    assert r.status == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"] == 'attachment; filename="audit.csv"'
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"))))
    assert tuple(rows[0]) == auditlog.CSV_COLUMNS == ("seq", "at", "actor", "action", "target", "detail", "hash")
    assert len(rows) == 1 + n // 2 and {row[2] for row in rows[1:]} == {"人@city.test"}
    assert [int(row[0]) for row in rows[1:]] == sorted(int(row[0]) for row in rows[1:])  # oldest first
    assert json.loads(rows[1][5]) == {"i": 0, "note": "说明, \"quoted\""}

    async def cli_text() -> str:  # what `postroom audit export --csv --actor 人@city.test` writes
        async with web.mb.router.central.read() as conn:
            got = (await conn.execute(auditlog.query(actor="人@city.test", newest_first=False))).all()
        return auditlog.csv_text(got, header=True)
    assert body.decode("utf-8") == web.run(cli_text())
    exports = _entries(web, "audit.export")
    assert [(e["actor"], json.loads(e["detail"])["search"]) for e in exports] == [
        ("alice@city.test", {"actor": "人@city.test"})]
    r, _ = await client.get("/admin/audit/export?until=never")
    assert r.status == 400


async def test_verify_names_the_first_bad_entry_and_is_audited(web, client):
    _seed(web, [(T0 + timedelta(seconds=i), "robot@city.test", "test.step", f"t{i}", {"i": i}) for i in range(30)])

    async def tamper() -> None:
        async with web.mb.router.central.write() as conn:
            await conn.execute(text("UPDATE audit_log SET detail = '{\"i\": 99}' WHERE seq = 7"))
    web.run(tamper())
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    _, page = await client.get("/admin/audit")
    r, page = await client.post("/admin/audit/verify", {"csrf": csrf_of(page)})
    assert r.status == 200 and str(r.url).endswith("/admin/audit?verified=1")
    result = re.search(r'<p id="aud-verify-result"[^>]*>(.*?)</p>', page, re.S).group(1)
    assert "第 7 条" in result and "edited" in result and "alice@city.test" in result
    [v] = _entries(web, "audit.verify")
    assert json.loads(v["detail"])["problem"] == "audit entry 7: its content does not match its hash (edited)"


async def test_verify_runs_once_at_a_time_and_at_most_once_a_minute(web, client):
    set_role(web, "alice@city.test", "admin")
    await client.sign_in()
    _, page = await client.get("/admin/audit")
    token = csrf_of(page)
    got = await asyncio.gather(*(client.post("/admin/audit/verify", {"csrf": token}) for _ in range(3)))
    assert all(r.status == 200 and "aud-verify-result" in p for r, p in got)
    r, page = await client.post("/admin/audit/verify", {"csrf": token})  # soon after: the last result again
    assert r.status == 200 and "aud-verify-result" in page and "notice" in page
    started = [json.loads(e["detail"])["started"] for e in _entries(web, "audit.verify")]
    assert sorted(started) == [False, False, False, True]


def test_verification_hashes_off_the_event_loop(web):
    """verify_off_loop does the hashing in a worker thread, a batch at a time."""
    _seed(web, [(T0, "robot@city.test", "test.step", f"t{i}", {"i": i}) for i in range(2500)])
    threads: set[int] = set()
    feed = auditlog._Walk.feed

    def spy(self, rows):
        threads.add(threading.get_ident())
        return feed(self, rows)

    async def go():
        loop_thread = threading.get_ident()
        auditlog._Walk.feed = spy
        try:
            return loop_thread, await auditlog.verify_off_loop(web.mb.router.central, [])
        finally:
            auditlog._Walk.feed = feed
    loop_thread, (count, problem) = web.run(go())
    assert problem is None and count >= 2500
    assert threads and loop_thread not in threads
