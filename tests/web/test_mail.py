"""The mail pages over real HTTP: folders with unread counts, paging and sorting, reading (GBK, attachments, HTML frame), actions seen over IMAP."""

from __future__ import annotations

import asyncio
import imaplib
import re
from datetime import datetime, timedelta, timezone
from urllib.parse import unquote

import aiohttp
import pytest

from mailboxes.ingest import prepare
from mailboxes.model import Flag

from .harness import PASSWORD, Browser, counted_reads, csrf_of
from .mails import ATTACHMENT, ATTACHMENT_DATA, gbk_mail, html_mail, plain_mail


def _imap(web) -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", web.port, timeout=30)
    c.login("alice@city.test", PASSWORD)
    return c


def _flags(c: imaplib.IMAP4, folder: str = "INBOX") -> dict[int, str]:
    c.select(folder)
    typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
    out = {}
    for line in data:
        if line:
            m = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line) or re.search(rb"FLAGS \(([^)]*)\) UID (\d+)", line)
            uid, flags = (m.group(1), m.group(2)) if m.re.pattern.startswith(rb"UID") else (m.group(2), m.group(1))
            out[int(uid)] = flags.decode()
    return out


async def test_folders_show_unread_counts_in_chinese_by_default_and_english_when_chosen(web, client):
    web.deliver("alice", plain_mail("one"))
    web.deliver("alice", plain_mail("two"), flags=int(Flag.SEEN))
    web.deliver("alice", plain_mail("three"))
    _, page = await client.sign_in()
    assert 'lang="zh-CN"' in page and "收件箱" in page and "已发送" in page and "退出" in page
    assert re.search(r'data-folder="INBOX".*?data-unread="2"', page, re.S)
    r, page = await client.post("/lang", {"csrf": csrf_of(page), "lang": "en", "back": "/mail?folder=INBOX"})
    assert str(r.url).endswith("/mail?folder=INBOX")
    assert 'lang="en"' in page and "Inbox" in page and "Sign out" in page and "收件箱" not in page
    # Without the cookie, Accept-Language decides; Chinese when it names nothing we have.
    other = Browser(web.url)
    try:
        _, login = await other.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
        assert "Sign in" in login
        _, login = await other.get("/login", headers={"Accept-Language": "fr, de;q=0.5"})
        assert "登录" in login
    finally:
        await other.close()


@pytest.mark.slow
async def test_the_list_pages_and_sorts_by_date_with_unread_and_flag_marks(web, client):
    acct = web.accounts["alice"]
    t0 = datetime(2026, 11, 1, tzinfo=timezone.utc)

    async def fill():
        for i in range(120):
            await web.mb.store.append(acct, "INBOX", prepare(plain_mail(f"msg {i:03d}")),
                                      flags=int(Flag.FLAGGED) if i == 119 else int(Flag.SEEN) if i % 2 else 0,
                                      internal_date=t0 + timedelta(minutes=i))
    await web.loop_run(fill())
    _, page = await client.sign_in()
    subjects = re.findall(r"msg (\d{3})", page)
    assert len(subjects) == 50 and subjects[0] == "119" and subjects[-1] == "070"
    assert "第 1 页，共 3 页（120 封）" in page
    first_row = re.search(r'<tr class="(\w+)" data-uid="120">(.*?)</tr>', page, re.S)
    assert first_row.group(1) == "unread" and 'class="flag"' in first_row.group(2)
    assert re.search(r'<tr class="read" data-uid="118">', page)
    _, page = await client.get("/mail?folder=INBOX&page=3")
    assert re.findall(r"msg (\d{3})", page) == [f"{i:03d}" for i in range(19, -1, -1)]
    _, page = await client.get("/mail?folder=INBOX&order=asc")
    assert re.findall(r"msg (\d{3})", page)[:3] == ["000", "001", "002"]
    r, _ = await client.get("/mail?folder=NoSuchFolder")
    assert r.status == 404


async def test_reading_a_gbk_message_marks_it_seen_for_imap_and_downloads_the_chinese_attachment(web, client):
    web.deliver("alice", gbk_mail())
    imap = _imap(web)
    try:
        assert "\\Seen" not in _flags(imap)[1]
        _, page = await client.sign_in()
        _, page = await client.get("/message?folder=INBOX&uid=1")
        assert "关于第三季度报告的通知" in page and "王芳 &lt;wang@district.test&gt;" in page
        assert "各位同事" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
        assert "\\Seen" in _flags(imap)[1]  # the IMAP session sees the webmail's read mark
        href = re.search(r'href="(/message/part\?[^"]+)"', page).group(1).replace("&amp;", "&")
        r, data = await client.download(href)
        assert r.status == 200 and data == ATTACHMENT_DATA
        cd = r.headers["Content-Disposition"]
        assert cd.startswith("attachment; filename=\"")
        assert unquote(cd.split("filename*=UTF-8''", 1)[1]) == ATTACHMENT  # RFC 6266 §4.3
        assert r.headers["Content-Type"] == "application/octet-stream"
        r, _ = await client.get("/message/part?folder=INBOX&uid=1&part=9")
        assert r.status == 404
    finally:
        imap.logout()


@pytest.mark.slow
async def test_html_is_sanitised_and_framed_under_its_own_policy(web, client):
    web.deliver("alice", html_mail('<p onclick="x()">Hi</p><script>alert(1)</script>'
                                   '<img src="https://tracker.example/p.gif"><a href="javascript:alert(2)">j</a>'))
    await client.sign_in()
    _, page = await client.get("/message?folder=INBOX&uid=1")
    frame = re.search(r'<iframe[^>]*>', page).group(0)
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in frame and "allow-scripts" not in frame
    assert 'id="images-blocked"' in page
    src = re.search(r'src="(/message/body\?[^"]+)"', frame).group(1).replace("&amp;", "&")
    r, body = await client.get(src)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "img-src data:;" in csp and "sandbox" in csp and "script" not in csp
    assert "<script" not in body and "onclick" not in body and "javascript:" not in body and "Hi" in body
    r, _ = await client.get(src.replace("images=0", "images=1"))
    assert "img-src data: https: http:" in r.headers["Content-Security-Policy"]
    _, page = await client.get("/message?folder=INBOX&uid=1&view=text")
    assert "plain version" in page and "<iframe" not in page


@pytest.mark.slow
async def test_actions_go_through_the_store_and_imap_sees_them(web, client):
    for i in range(3):
        web.deliver("alice", plain_mail(f"m{i}"))
    imap = _imap(web)
    try:
        _, page = await client.sign_in()
        token = csrf_of(page)

        async def act(uid: int, do: str, folder: str = "INBOX", **extra):
            r, _ = await client.post("/message/action", {"csrf": token, "folder": folder, "uid": str(uid), "do": do,
                                                         **extra}, allow_redirects=False)
            assert r.status == 303, (do, r.status)
        await act(1, "flag")
        await act(2, "read")
        assert "\\Flagged" in _flags(imap)[1] and "\\Seen" in _flags(imap)[2]
        await act(1, "unflag")
        await act(2, "unread")
        assert _flags(imap)[1] == "" and _flags(imap)[2] == ""
        await act(3, "move", to="Archive")
        assert 3 not in _flags(imap) and len(_flags(imap, "Archive")) == 1
        await act(1, "delete")
        assert sorted(_flags(imap)) == [2] and len(_flags(imap, "Trash")) == 1
        await act(1, "delete", folder="Trash")  # deleting in Trash is for ever
        assert _flags(imap, "Trash") == {}
        r, _ = await client.post("/message/action", {"csrf": token, "folder": "INBOX", "uid": "2", "do": "move",
                                                     "to": "Nowhere"}, allow_redirects=False)
        assert r.status == 404 and sorted(_flags(imap)) == [2]
    finally:
        imap.logout()


async def test_one_account_cannot_reach_anothers_message_by_changing_the_url(web, client):
    web.deliver("bob", gbk_mail(to="bob@city.test"))
    _, page = await client.sign_in()
    token = csrf_of(page)
    for path in ("/message?folder=INBOX&uid=1", "/message/body?folder=INBOX&uid=1",
                 "/message/part?folder=INBOX&uid=1&part=2", "/message?folder=Shared/bob/INBOX&uid=1",
                 "/message?folder=INBOX&uid=99999999999", "/message?folder=INBOX&uid=-1"):
        r, body = await client.get(path)
        assert r.status == 404 and "关于" not in body, path
    for do in ("flag", "delete", "read"):
        r, _ = await client.post("/message/action", {"csrf": token, "folder": "INBOX", "uid": "1", "do": do},
                                 allow_redirects=False)
        assert r.status == 404
    bob = web.accounts["bob"]
    metas = await web.loop_run(web.mb.store.messages((await web.loop_run(web.mb.store.folder(bob, "INBOX"))).ref))
    assert [m.flags for m in metas] == [0]


async def test_pages_need_a_session(web, client):
    for path in ("/mail", "/message?folder=INBOX&uid=1", "/message/body?folder=INBOX&uid=1",
                 "/message/part?folder=INBOX&uid=1&part=1", "/"):
        r, _ = await client.get(path, allow_redirects=False)
        assert r.status == 303 and r.headers["Location"] == "/login", path


async def test_search_finds_chinese_substrings_and_english_words(web, client):
    web.deliver("alice", gbk_mail())  # 关于第三季度报告的通知, body 各位同事
    web.deliver("alice", plain_mail("Quarterly budget review"))
    web.deliver("alice", plain_mail("Lunch on Friday"))
    await client.sign_in()
    for q, subjects in (("季度报告", ["关于第三季度报告的通知"]), ("各位同事", ["关于第三季度报告的通知"]),
                        ("BUDGET", ["Quarterly budget review"]), ("carol", ["Lunch on Friday", "Quarterly budget review"]),
                        ("nothing-like-this", [])):
        r, page = await client.get("/mail", params={"folder": "INBOX", "q": q})
        assert r.status == 200
        found = re.findall(r'<td class="subject"><a [^>]*>([^<]*)</a>', page)
        assert sorted(found) == sorted(subjects), (q, found)
        assert f"{len(subjects)} 封" in page
    r, page = await client.get("/mail", params={"folder": "INBOX", "q": "报告 " * 300})  # cut to 200 characters
    assert r.status == 200 and "没有找到匹配的邮件" in page


async def test_new_mail_is_announced_on_the_event_stream(web, client):
    await client.sign_in()
    async with client.session.get(web.url + "/events", timeout=aiohttp.ClientTimeout(total=60)) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        assert (await r.content.readline()).startswith(b"retry:")
        web.deliver("alice", plain_mail("live one"))
        lines = []
        while b"data:" not in b"".join(lines):
            lines.append(await asyncio.wait_for(r.content.readline(), 30))
        assert b"event: changed\n" in lines and b'data: {"folder": "INBOX"}\n' in lines
    other = Browser(web.url)  # no session, no stream
    try:
        r, _ = await other.get("/events", allow_redirects=False)
        assert r.status == 303
    finally:
        await other.close()


async def test_malformed_folder_names_are_a_client_error_not_a_crash(web, client):
    web.deliver("alice", plain_mail("one"))
    _, page = await client.sign_in()
    for path in ("/mail?folder=*", "/mail?folder=a//b", "/message?folder=%25&uid=1", "/mail?folder=" + "x" * 2000):
        r, _ = await client.get(path)
        assert r.status in (400, 404), (path, r.status)
    r, _ = await client.post("/message/action", {"csrf": csrf_of(page), "folder": "INBOX", "uid": "1", "do": "move",
                                                 "to": "bad*name"}, allow_redirects=False)
    assert r.status in (400, 404)
    r, _ = await client.get("/mail?folder=INBOX")
    assert r.status == 200 and "one" in _


async def test_a_large_message_is_shown_and_its_small_attachment_downloaded_without_reading_it_whole(web, client):
    """Only the text parts (and the one part downloaded) are read of a message of RANGED_OCTETS or more."""
    import random
    from email.message import EmailMessage

    rng = random.Random(7)
    big, small = rng.randbytes(600_000), rng.randbytes(100_000)
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "carol@city.test", "alice@city.test", "年报和附件"
    m.set_content("请查收年报。\n")
    m.add_alternative("<p>请查收<b>年报</b>。</p>", subtype="html")
    m.add_attachment(big, maintype="application", subtype="pdf", filename="big.pdf")
    m.add_attachment(small, maintype="application", subtype="octet-stream", filename="small.bin")
    web.deliver("alice", bytes(m))
    with counted_reads(web.mb.store) as read:
        _, page = await client.sign_in()
        _, page = await client.get("/message?folder=INBOX&uid=1&view=text")
        assert "请查收年报。" in page and "big.pdf" in page
        assert read and {kind for kind, _ in read} == {"range"} and sum(n for _, n in read) < 2000
        read.clear()
        _, frame = await client.get("/message/body?folder=INBOX&uid=1&images=0")
        assert "<b>年报</b>" in frame and {kind for kind, _ in read} == {"range"}
        hrefs = [h.replace("&amp;", "&") for h in re.findall(r'href="(/message/part\?[^"]+)"', page)]
        read.clear()
        r, data = await client.download(hrefs[1])  # small.bin
        assert r.status == 200 and data == small
        assert [kind for kind, _ in read] == ["range"] and read[0][1] < len(small) * 2
        read.clear()
        r, data = await client.download(hrefs[0])  # big.pdf: most of the message, read in one go
        assert r.status == 200 and data == big and [kind for kind, _ in read] == ["whole"]
