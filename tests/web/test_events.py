"""Workflow events over real HTTP and IMAP: POST /api/v1/events with a source token, the mail read back with imaplib.

Idempotency (one message for concurrent posts of one id), batches, every field wrong in turn,
unknown recipients, departments and groups expanded through the directory, token revocation,
the headers of a notification, and that no out-of-office answers one.
"""

from __future__ import annotations

import asyncio
import email
import fcntl
import imaplib
import os
import time
from email import policy

import aiohttp
import pytest

from bridges import api as events_api
from bridges import worker as events_worker
from mailboxes import events as events_store
from mailboxes.apitokens import ApiTokens
from mailboxes.events import SENT, EventStore, Sources
from mailboxes.mailsettings import OutOfOffice
from tests.protocol.imap.harness import wait_for

from .harness import PASSWORD


def source_token(web, name: str = "oa") -> str:
    async def go():
        _, secret, _ = await Sources(web.mb.router.central).add(name)
        return secret
    return web.run(go())


def bearer(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def event(i: int | str = 1, **over) -> dict:
    ev = {"id": f"ev-{i}", "type": "approval_request", "recipients": ["alice@city.test"],
          "title": f"请审批：采购申请 {i}", "body": "办公用品采购，金额 3,200 元。", "link": f"https://oa.city.test/items/{i}",
          "urgency": "normal", "locale": "zh"}
    ev.update(over)
    return ev


async def post(web, secret: str, body, path: str = "/api/v1/events") -> tuple[int, dict, aiohttp.ClientResponse]:
    async with aiohttp.ClientSession() as s, s.post(web.url + path, json=body, headers=bearer(secret)) as r:
        return r.status, await r.json(content_type=None), r


def inbox(web, user: str = "alice") -> list[email.message.EmailMessage]:
    """Every message in the user's INBOX, read over IMAP."""
    with imaplib.IMAP4("127.0.0.1", web.port) as c:
        c.login(f"{user}@city.test", PASSWORD)
        c.select("INBOX", readonly=True)
        _, data = c.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, parts = c.uid("FETCH", uid, "(BODY.PEEK[])")
            out.append(email.message_from_bytes(parts[0][1], policy=policy.default))
        return out


def settled(web, n: int) -> bool:
    """True when at least n events are stored and none waits (then no more mail will come of them)."""
    counts = web.run(EventStore(web.mb.router.central).counts())
    return sum(counts.values()) >= n and set(counts) <= {SENT}


def delivered(web, n: int, user: str = "alice") -> list[email.message.EmailMessage]:
    wait_for(lambda: settled(web, n), timeout=60, what=f"{n} events settled")
    return inbox(web, user)


async def test_an_event_arrives_as_a_notification_that_threads_by_item(web):
    secret = source_token(web)
    status, body, r = await post(web, secret, event(1, item="PO-7"))
    assert status == 202 and body == {"id": "ev-1", "event": body["event"], "recipients": 1, "unknown": []}
    assert "Idempotent-Replayed" not in r.headers
    status, _, _ = await post(web, secret, event(2, item="PO-7", title="采购申请已退回", type="reminder"))
    assert status == 202
    by_subject = {str(m["Subject"]): m for m in delivered(web, 2)}
    assert sorted(by_subject) == ["请审批：采购申请 1", "采购申请已退回"]
    first, second = by_subject["请审批：采购申请 1"], by_subject["采购申请已退回"]
    for m in (first, second):
        assert m["Auto-Submitted"] == "auto-generated"
        assert m["List-Id"] == "oa <oa.events.localhost>"
        assert m["List-Unsubscribe"] == "<https://localhost/settings/notifications>"
        assert m["Return-Path"] == "<>"  # the null reverse-path: nothing answers or bounces to the source
        assert m["From"].addresses[0].addr_spec == "notifications@localhost"
        assert m.get_content_type() == "multipart/alternative"
    # one workflow item: both refer to the same thread id, each has its own Message-ID
    assert first["In-Reply-To"] == second["In-Reply-To"] == first["References"] == second["References"]
    assert first["Message-ID"] != second["Message-ID"]
    text = first.get_body(("plain",)).get_content()
    html = first.get_body(("html",)).get_content()
    assert "您有一项待审批事项" in text and "https://oa.city.test/items/1" in text and "办公用品采购" in text
    assert '<a href="https://oa.city.test/items/1">前往审批</a>' in html
    # a different item threads elsewhere
    await post(web, secret, event(3, item="PO-8"))
    third = next(m for m in delivered(web, 3) if str(m["Subject"]).endswith(" 3"))
    assert third["References"] != first["References"]


async def test_the_same_id_posted_concurrently_sends_one_message(web):
    secret = source_token(web)
    results = await asyncio.gather(*(post(web, secret, event(9)) for _ in range(12)))
    assert {s for s, _, _ in results} == {202}
    assert all(b == results[0][1] for _, b, _ in results)  # every post got the first result
    assert sum(r.headers.get("Idempotent-Replayed") != "true" for _, _, r in results) == 1
    msgs = delivered(web, 1)
    assert [str(m["Subject"]) for m in msgs] == ["请审批：采购申请 9"]
    # a retry after delivery: the same answer, nothing sent again
    status, body, r = await post(web, secret, event(9))
    assert status == 202 and body == results[0][1] and r.headers["Idempotent-Replayed"] == "true"
    assert len(delivered(web, 1)) == 1
    # the id reused for another event is a conflict, not a silent success
    status, body, r = await post(web, secret, event(9, title="another"))
    assert (status, r.content_type, body["field"]) == (409, "application/problem+json", "id")


WRONG = [
    ("id", {"id": None}), ("id", {"id": ""}), ("id", {"id": "has space"}), ("id", {"id": "x" * 129}),
    ("id", {"id": 7}),
    ("type", {"type": "Approval"}), ("type", {"type": "../etc"}), ("type", {"type": ""}), ("type", {"type": 1}),
    ("recipients", {"recipients": []}), ("recipients", {"recipients": "alice@city.test"}),
    ("recipients[1]", {"recipients": ["alice@city.test", 5]}), ("recipients[0]", {"recipients": ["a\r\nb"]}),
    ("recipients", {"recipients": ["alice@city.test"] * (events_api.validate.MAX_RECIPIENTS + 1)}),
    ("title", {"title": ""}), ("title", {"title": "two\nlines"}), ("title", {"title": "x" * 201}),
    ("title", {"title": ["t"]}),
    ("body", {"body": 3}), ("body", {"body": "", "data": None}), ("body", {"body": "x" * (32 * 1024 + 1)}),
    ("data", {"data": "text"}), ("data", {"data": {"a": "x" * 20000}}),
    ("data", {"data": {"a": [[[[[[[[[[1]]]]]]]]]]}}),
    ("link", {"link": "javascript:alert(1)"}), ("link", {"link": "https://a b"}), ("link", {"link": 1}),
    ("urgency", {"urgency": "high"}), ("urgency", {"urgency": ["urgent"]}),
    ("locale", {"locale": "fr"}), ("locale", {"locale": None}),
    ("colour", {"colour": "red"}),
]


@pytest.fixture(scope="module")
def oa(shared_web) -> str:
    return source_token(shared_web)


@pytest.mark.parametrize("field,change", WRONG, ids=[f"{f}-{i}" for i, (f, _) in enumerate(WRONG)])
async def test_every_field_wrong_in_turn_is_a_problem_naming_it(shared_web, oa, field, change):
    ev = {**event(1), **change}
    if change == {"id": None}:
        del ev["id"]  # missing altogether
    status, body, r = await post(shared_web, oa, ev)
    assert (status, r.content_type) == (400, "application/problem+json"), body
    assert body["status"] == 400 and body["field"] == field and body["detail"].startswith(field)
    assert shared_web.run(EventStore(shared_web.mb.router.central).counts()) == {}  # nothing stored


async def test_malformed_bodies_are_problems_and_the_server_keeps_serving(web):
    secret = source_token(web)
    async with aiohttp.ClientSession() as s:
        for data, ctype, want in ((b"{", "application/json", 400), (b"[" * 100_000, "application/json", 400),
                                  (b"id=1", "application/x-www-form-urlencoded", 415),
                                  (b"x" * (events_api.MAX_EVENT_BYTES + 1), "application/json", 413),
                                  (b"[]", "application/json", 400)):
            async with s.post(web.url + "/api/v1/events", data=data,
                              headers={**bearer(secret), "Content-Type": ctype}) as r:
                assert (r.status, r.content_type) == (want, "application/problem+json")
    assert (await post(web, secret, event(1)))[0] == 202


async def test_unknown_recipients_are_reported_not_dropped(web):
    secret = source_token(web)
    status, body, _ = await post(web, secret, event(1, recipients=[
        "alice@city.test", "nobody@city.test", "far@elsewhere.example", "no-such-dept", "bad@@x"]))
    assert status == 202 and body["recipients"] == 1
    assert body["unknown"] == [
        {"recipient": "nobody@city.test", "reason": "no such address"},
        {"recipient": "far@elsewhere.example", "reason": "not a local address"},
        {"recipient": "no-such-dept", "reason": "no such address or department"},
        {"recipient": "bad@@x", "reason": "not a valid address"}]
    status, body, r = await post(web, secret, event(2, recipients=["nobody@city.test"]))
    assert (status, r.content_type, body["field"]) == (422, "application/problem+json", "recipients")
    assert body["unknown"] == [{"recipient": "nobody@city.test", "reason": "no such address"}]
    assert len(delivered(web, 1)) == 1


async def test_a_department_code_expands_to_its_members_and_sub_departments(web):
    async def setup():
        d = web.mb.directory
        await d.add_department("tax", "税务处")
        await d.add_department("tax-audit", "稽查科", parent="tax")
        await d.add_department("hr", "人事处")
        for name, dept in (("carol", "tax"), ("dave", "tax-audit"), ("erin", "hr"), ("gone", "tax")):
            await web.add_account(name, department=dept)
        await d.set_enabled("gone@city.test", False)
        await d.add_group("leaders@city.test", "领导", post_policy="anyone")
        await d.set_group_members("leaders@city.test", add=["erin@city.test", "carol@city.test"])
    web.run(setup())
    secret = source_token(web)
    status, body, _ = await post(web, secret, event(1, recipients=["TAX"]))
    assert status == 202 and body["recipients"] == 2 and body["unknown"] == []
    status, body, _ = await post(web, secret, event(2, recipients=["leaders@city.test", "carol@city.test"]))
    assert status == 202 and body["recipients"] == 2  # carol once, however many entries reach her
    wait_for(lambda: settled(web, 2), timeout=60, what="events settled")
    assert sorted(str(m["Subject"])[-1] for m in inbox(web, "carol")) == ["1", "2"]
    assert [str(m["Subject"])[-1] for m in inbox(web, "dave")] == ["1"]
    assert [str(m["Subject"])[-1] for m in inbox(web, "erin")] == ["2"]
    assert inbox(web, "alice") == []


@pytest.mark.slow
async def test_batches_up_to_the_limit(web):
    secret = source_token(web)
    web.run(web.add_account("bulk"))
    batch = [event(i) for i in range(40)] + [event(0)] + [event(99, recipients=["nobody@city.test"])]
    status, body, _ = await post(web, secret, {"events": batch}, "/api/v1/events/batch")
    assert status == 202 and len(body["results"]) == 42
    assert [r["status"] for r in body["results"]] == [202] * 41 + [422]
    assert body["results"][40] == {**body["results"][0], "replayed": True}  # the same id twice in one batch
    assert body["results"][41]["unknown"] == [{"recipient": "nobody@city.test", "reason": "no such address"}]
    assert sorted(str(m["Subject"]) for m in delivered(web, 40)) == sorted(f"请审批：采购申请 {i}" for i in range(40))
    # a malformed event refuses the whole batch, naming it
    bad = [event(f"b{i}") for i in range(5)]
    bad[3]["title"] = ""
    status, body, r = await post(web, secret, {"events": bad}, "/api/v1/events/batch")
    assert (status, body["field"]) == (400, "events[3].title")
    over = [event(f"o{i}", recipients=["bulk@city.test"]) for i in range(events_api.MAX_BATCH + 1)]
    status, body, _ = await post(web, secret, {"events": over}, "/api/v1/events/batch")
    assert (status, body["field"]) == (413, "events")
    status, body, _ = await post(web, secret, {"events": over[:-1]}, "/api/v1/events/batch")
    assert status == 202 and [r["status"] for r in body["results"]] == [202] * events_api.MAX_BATCH
    assert web.run(EventStore(web.mb.router.central).counts())  # stored before the answer
    assert sum(web.run(EventStore(web.mb.router.central).counts()).values()) == 40 + events_api.MAX_BATCH


async def test_tokens_of_the_wrong_kind_revoked_or_only_a_cookie_are_refused(web, client):
    secret = source_token(web)
    assert (await post(web, secret, event(1)))[0] == 202
    async def admin_token():
        acct = await web.mb.directory.account("alice@city.test")
        return (await ApiTokens(web.mb.router.central).create(acct.id))[0]
    person = web.run(admin_token())
    status, body, r = await post(web, person, event(2))
    assert (status, r.content_type) == (401, "application/problem+json")  # a person's token posts no events
    async with aiohttp.ClientSession() as s, s.get(web.url + "/api/v1/accounts", headers=bearer(secret)) as r:
        assert r.status == 401  # and a source's reads no accounts
    await client.sign_in()  # a signed-in browser: its cookie alone never authenticates /api/v1
    async with client.session.post(client.base + "/api/v1/events", json=event(3)) as r:
        assert (r.status, r.content_type) == (401, "application/problem+json")
    web.run(Sources(web.mb.router.central).revoke("oa"))
    status, _, r = await post(web, secret, event(4))
    assert (status, r.content_type) == (401, "application/problem+json")
    assert len(delivered(web, 1)) == 1


async def test_the_source_reads_back_its_event(web):
    secret = source_token(web)
    other = source_token(web, "docs")
    _, first, _ = await post(web, secret, event(1))
    wait_for(lambda: settled(web, 1), timeout=60, what="the event settled")
    async with aiohttp.ClientSession() as s:
        async with s.get(web.url + "/api/v1/events/ev-1", headers=bearer(secret)) as r:
            assert r.status == 200 and await r.json() == {**first, "state": "sent", "type": "approval_request"}
        async with s.get(web.url + "/api/v1/events/ev-1", headers=bearer(other)) as r:
            assert r.status == 404  # another source's ids are its own


async def test_no_out_of_office_answers_a_notification(web):
    from delivery.worker import Worker

    async def away():
        acct = await web.mb.directory.account("alice@city.test")
        await web.mb.settings.set_out_of_office(acct.id, OutOfOffice(enabled=True, subject="不在办公室", body="休假"))
    web.run(away())
    secret = source_token(web)
    assert (await post(web, secret, event(1)))[0] == 202
    [m] = delivered(web, 1)
    assert m["Auto-Submitted"] == "auto-generated" and m["To"] == "alice@city.test"  # addressed to her directly
    worker = next(s for s in web.services if isinstance(s, Worker))
    web.run(worker.submitter.personal.settle())  # out-of-office replies in flight are queued by now
    assert web.run(worker.queue.entries()) == []  # none was: nothing goes back to the source


async def test_preferences_through_the_api_for_oneself_or_by_an_administrator(web):
    from sqlalchemy import update

    from mailboxes import schema as t

    async def tokens():
        d, toks = web.mb.directory, ApiTokens(web.mb.router.central)
        alice, bob = await d.account("alice@city.test"), await d.account("bob@city.test")
        async with web.mb.router.central.write() as conn:
            await conn.execute(update(t.accounts).where(t.accounts.c.id == bob.id).values(role="admin"))
        return (await toks.create(alice.id))[0], (await toks.create(bob.id))[0]
    alice, admin = web.run(tokens())
    source = source_token(web)
    url = web.url + "/api/v1/events/preferences"
    async with aiohttp.ClientSession() as s:
        async with s.put(url, json={"modes": {"reminder": "daily", "approval_request": "immediate"}},
                         headers=bearer(alice)) as r:
            assert r.status == 200 and await r.json() == {"account": "alice@city.test", "modes": {"reminder": "daily"}}
        async with s.get(url, headers=bearer(alice)) as r:
            assert (await r.json())["modes"] == {"reminder": "daily"}
        for body, field in (({"modes": {"reminder": "weekly"}}, "modes.reminder"), ({"modes": {"Bad": "daily"}},
                            "modes.Bad"), ({"modes": []}, "modes"), ({}, "modes")):
            async with s.put(url, json=body, headers=bearer(alice)) as r:
                assert (r.status, (await r.json())["field"]) == (400, field)
        async with s.get(url + "/bob@city.test", headers=bearer(alice)) as r:
            assert r.status == 403  # not another's
        async with s.put(url + "/alice@city.test", json={"modes": {"reminder": "hourly"}}, headers=bearer(admin)) as r:
            assert r.status == 200 and (await r.json())["modes"] == {"reminder": "hourly"}  # an administrator may
        async with s.get(url + "/nobody@city.test", headers=bearer(admin)) as r:
            assert r.status == 404
        async with s.get(url, headers=bearer(source)) as r:
            assert r.status == 401  # a source's token is no person's
    # the choice acts: alice's reminder waits for her hourly digest, an urgent one does not
    assert (await post(web, source, event(1, type="reminder")))[0] == 202
    assert (await post(web, source, event(2, type="reminder", urgency="urgent")))[0] == 202
    assert [str(m["Subject"]) for m in delivered(web, 2)] == ["【紧急】请审批：采购申请 2"]


@pytest.mark.slow
async def test_the_preference_page_list_unsubscribe_points_at(web, client):
    from .harness import csrf_of

    await client.sign_in()
    r, page = await client.get("/settings/notifications")
    assert r.status == 200 and 'for="nt-reminder"' in page and "提醒" in page and "每小时汇总" in page
    r, page = await client.post("/settings/notifications", {"csrf": csrf_of(page), "mode-reminder": "daily",
                                                             "mode-approval_request": "immediate"})
    assert r.status == 200 and 'id="nt-done"' in page
    assert '<option value="daily" selected>' in page
    alice = web.run(web.mb.directory.account("alice@city.test"))
    assert web.run(EventStore(web.mb.router.central).preferences(alice.id)) == {"reminder": "daily"}
    r, _ = await client.post("/settings/notifications", {"mode-reminder": "hourly"})
    assert r.status == 403  # CSRF as every form
    r, page = await client.get("/settings/notifications")
    r, _ = await client.post("/settings/notifications", {"csrf": csrf_of(page), "mode-reminder": "weekly"})
    assert r.status == 400


async def test_a_batch_that_reaches_too_many_people_in_all_is_refused(web, monkeypatch):
    monkeypatch.setattr(events_api, "MAX_BATCH_REACH", 5)
    secret = source_token(web)
    batch = [event(i, recipients=["alice@city.test", "bob@city.test"]) for i in range(3)]
    status, body, _ = await post(web, secret, {"events": batch}, "/api/v1/events/batch")
    assert (status, body["field"]) == (413, "events")
    assert web.run(EventStore(web.mb.router.central).counts()) == {}  # nothing of it stored
    status, body, _ = await post(web, secret, {"events": batch[:2]}, "/api/v1/events/batch")
    assert status == 202


async def until(predicate, what: str, timeout: float = 30.0) -> None:
    """Poll `predicate` while this loop keeps serving (the posts in flight are on it); fail after `timeout` (a hang)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def crowd_in(web, secret: str, ids) -> None:
    """Post these events at once while the store's writer is held, so that all wait for their 202 together."""
    store = web.ctx.extras["events"].store
    assert web.run(ApiTokens(web.mb.router.central).find(secret)) is not None  # its last use written now, not then
    held = os.open(web.mb.router.central.write_lock.path, os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another process writing: the server's writes wait
        posts = [asyncio.ensure_future(post(web, secret, event(i))) for i in ids]
        await until(lambda: store.posting >= len(posts), f"{len(posts)} posts waiting")
    finally:
        os.close(held)  # the lock goes with the descriptor
    assert [status for status, _, _ in await asyncio.gather(*posts)] == [202] * len(posts)


@pytest.mark.slow
async def test_a_burst_of_posts_is_answered_first_then_delivered(web, monkeypatch):
    """While posts crowd in (BUSY_POSTS waiting at once), the worker waits — their 202s do not queue behind
    deliveries — until they stop or for INTAKE_DEFER at most; then all is delivered. Time is moved by hand."""
    now, looks = [0.0], [0]

    def clock() -> float:
        looks[0] += 1
        return now[0]
    monkeypatch.setattr(events_store, "monotonic", clock)
    monkeypatch.setattr(events_worker, "monotonic", clock)
    secret = source_token(web)
    store = web.ctx.extras["events"].store
    await crowd_in(web, secret, range(events_store.BUSY_POSTS))
    seen = looks[0]
    await until(lambda: looks[0] > seen + 20, "the worker looking at the intake")  # it waits, and waits
    assert web.run(store.counts()) == {"pending": events_store.BUSY_POSTS}
    now[0] += events_store.BUSY_LINGER  # the posts stopped coming: the intake is quiet
    assert len(delivered(web, events_store.BUSY_POSTS)) == events_store.BUSY_POSTS
    # A crowd that does not stop: the worker waits INTAKE_DEFER, then delivers all the same.
    monkeypatch.setattr(events_store, "BUSY_LINGER", 3600.0)
    await crowd_in(web, secret, range(10, 10 + events_store.BUSY_POSTS))
    seen = looks[0]
    await until(lambda: looks[0] > seen + 20, "the worker looking at the intake")
    assert web.run(store.counts()) == {"sent": events_store.BUSY_POSTS, "pending": events_store.BUSY_POSTS}
    now[0] += events_worker.INTAKE_DEFER
    assert len(delivered(web, 2 * events_store.BUSY_POSTS)) == 2 * events_store.BUSY_POSTS
    assert store.intake_busy()  # still: the worker stopped waiting by the deadline


@pytest.mark.slow
async def test_a_round_waits_for_the_intake_no_longer_than_its_oldest_event_may_wait(web, monkeypatch):
    """The wait for a crowd of posts ends INTAKE_DEFER after the oldest event accepted here was, not
    INTAKE_DEFER after the round began: in a flow that never stops, a round that began late added a
    fresh second to events that had waited already. Time is moved by hand."""
    now = [100.0]
    monkeypatch.setattr(events_store, "monotonic", lambda: now[0])
    monkeypatch.setattr(events_worker, "monotonic", lambda: now[0])
    monkeypatch.setattr(events_store, "BUSY_LINGER", 3600.0)  # the posts never stop
    secret = source_token(web)
    worker = web.ctx.extras["events"].worker
    await crowd_in(web, secret, range(events_store.BUSY_POSTS))  # accepted at 100.0
    assert worker.store.intake_busy() and worker.store.unclaimed_since == 100.0
    now[0] += 0.9 * events_worker.INTAKE_DEFER
    late_round = asyncio.ensure_future(worker._let_intake_go_first())  # a round that begins now
    for _ in range(5):
        await asyncio.sleep(events_worker.INTAKE_LOOK)
    assert not late_round.done()  # it waits for the crowd...
    now[0] = 100.0 + events_worker.INTAKE_DEFER
    await until(late_round.done, "the wait to end at the oldest event's deadline")  # ...until then, not 0.9 later
    assert len(delivered(web, events_store.BUSY_POSTS)) == events_store.BUSY_POSTS
