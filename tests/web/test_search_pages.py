"""The search box over real HTTP: hits counted and paged in the database (page past the end: the last page); punctuation falls back to the substring index."""

from __future__ import annotations

import re

from webmail.views.mail import PAGE_SIZE

from .mails import plain_mail

SUBJECT = re.compile(r'<td class="subject"><a [^>]*>([^<]*)</a>')


async def test_search_results_page_and_count_like_the_folder(web, client):
    hits = PAGE_SIZE + 7
    web.run(web.deliver_many("alice", [plain_mail(f"第三季度报告 {i}") for i in range(hits)]
                             + [plain_mail(f"Lunch {i}") for i in range(20)] + [plain_mail("Deadline!!! now")]))
    await client.sign_in()
    r, page = await client.get("/mail", params={"folder": "INBOX", "q": "季度"})
    assert r.status == 200 and f"{hits} 封" in page
    first = SUBJECT.findall(page)
    assert len(first) == PAGE_SIZE and all("季度" in s for s in first)
    _, page2 = await client.get("/mail", params={"folder": "INBOX", "q": "季度", "page": "2"})
    second = SUBJECT.findall(page2)
    assert len(second) == 7 and not set(first) & set(second)
    assert sorted(first + second) == sorted(f"第三季度报告 {i}" for i in range(hits))
    _, past = await client.get("/mail", params={"folder": "INBOX", "q": "季度", "page": "99"})
    assert SUBJECT.findall(past) == second  # past the end: the last page
    _, oldest = await client.get("/mail", params={"folder": "INBOX", "q": "季度", "order": "asc"})
    assert SUBJECT.findall(oldest)[:7] == second[::-1]
    _, page = await client.get("/mail", params={"folder": "INBOX", "q": "!!!"})  # no word: the substring index
    assert SUBJECT.findall(page) == ["Deadline!!! now"] and "1 封" in page
    _, page = await client.get("/mail", params={"folder": "INBOX", "q": "lunch", "page": "3"})
    assert len(SUBJECT.findall(page)) == 20 and "20 封" in page
