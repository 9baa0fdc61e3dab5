"""Unit tests of the upload spool (webmail/uploads.py) and the draft link header: ids, names, limits, expiry."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from webmail import compose
from webmail.uploads import UploadSpool, UploadTooLarge, SpoolFull, _clean_name

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)


async def _chunks(*parts: bytes):
    for p in parts:
        yield p


def _spool(tmp_path, **kw) -> UploadSpool:
    return UploadSpool(tmp_path / "spool", clock=lambda: NOW, **kw)


async def test_ids_are_looked_up_only_inside_the_accounts_own_directory(tmp_path):
    spool = _spool(tmp_path)
    e = await spool.store(1, "a.txt", "text/plain", _chunks(b"ab", b"c"))
    assert spool.get(1, e.id).path.read_bytes() == b"abc"
    assert spool.get(2, e.id) is None and not spool.remove(2, e.id)
    for bad in ("../1/" + e.id, e.id + "/", "", "x" * 22 + "\n", e.id[:-1] + ".", None):
        assert spool.get(1, bad) is None and not spool.remove(1, bad)


async def test_a_file_past_the_limit_leaves_nothing_and_the_account_total_is_bounded(tmp_path):
    spool = _spool(tmp_path, max_file_bytes=10, max_account_bytes=15, max_account_entries=2)
    with pytest.raises(UploadTooLarge):
        await spool.store(1, "big", "", _chunks(b"x" * 6, b"x" * 6))
    assert [p for p in spool.root.rglob("*") if p.is_file()] == []
    await spool.store(1, "a", "", _chunks(b"x" * 10))
    with pytest.raises(SpoolFull):  # 10 + 6 > 15
        await spool.store(1, "b", "", _chunks(b"x" * 6))
    await spool.store(1, "c", "", _chunks(b"x" * 5))
    with pytest.raises(SpoolFull):  # two entries already
        await spool.store(1, "d", "", _chunks(b"x"))
    assert len(spool.entries(1)) == 2 and spool.entries(2) == []


async def test_entries_expire_after_the_ttl_and_the_sweep_removes_them(tmp_path):
    now = [NOW]
    spool = UploadSpool(tmp_path / "spool", clock=lambda: now[0], ttl=timedelta(hours=1))
    e = await spool.store(7, "a", "", _chunks(b"1"))
    now[0] += timedelta(minutes=59)
    assert spool.sweep() == 0 and spool.get(7, e.id) is not None
    now[0] += timedelta(minutes=1)
    assert spool.get(7, e.id) is None
    assert spool.sweep() == 0 and list(spool.root.iterdir()) == []  # get() removed it; the empty dir went too


def test_names_keep_chinese_and_lose_paths_and_control_characters():
    assert _clean_name("二〇二六年 预算（草案）.xlsx") == "二〇二六年 预算（草案）.xlsx"
    assert _clean_name("C:\\Users\\王\\报告.pdf") == "报告.pdf"
    assert _clean_name("../../etc/pass\r\nwd") == "passwd"
    assert _clean_name("\x00") == "attachment" and len(_clean_name("名" * 1000)) == 255


def test_the_draft_link_survives_a_draft_and_never_goes_out():
    link = compose.DraftLink("reply", "收件箱/项目 & 预算", "42")
    assert compose.DraftLink.parse(link.header()) == link
    assert compose.DraftLink.parse("mode=reply&uid=1%0A2") == compose.DraftLink("reply", "", "")
    acct = type("A", (), {"address": "alice@city.test", "display_name": ""})()
    draft = compose.Draft(to="bob@city.test", subject="Re: x", body="b")
    saved, _ = compose.build(acct, draft, hostname="h", now=NOW, unsent=True, link=link)
    assert compose.continue_draft(saved)[2] == link
    sent, _ = compose.build(acct, draft, hostname="h", now=NOW, link=link)
    assert compose.DRAFT_LINK_HEADER.encode() not in sent


async def test_an_account_has_at_most_a_few_uploads_in_flight(tmp_path):
    from webmail.uploads import MAX_IN_FLIGHT

    spool = _spool(tmp_path)
    gate, all_started, started = asyncio.Event(), asyncio.Event(), []

    async def slow():
        yield b"x"
        started.append(1)
        if len(started) == MAX_IN_FLIGHT:
            all_started.set()
        await gate.wait()
        yield b"y"
    running = [asyncio.create_task(spool.store(1, f"{i}", "", slow())) for i in range(MAX_IN_FLIGHT)]
    await all_started.wait()
    with pytest.raises(SpoolFull):
        await spool.store(1, "one more", "", _chunks(b"z"))
    assert (await spool.store(2, "another account", "", _chunks(b"z"))).size == 1
    gate.set()
    assert [e.size for e in await asyncio.gather(*running)] == [2] * MAX_IN_FLIGHT
    assert (await spool.store(1, "now", "", _chunks(b"z"))).size == 1 and not spool.in_flight


async def test_an_upload_cut_off_midway_leaves_nothing(tmp_path):
    spool = _spool(tmp_path)

    async def cut():
        yield b"x" * 1000
        raise ConnectionResetError("client went away")
    with pytest.raises(ConnectionResetError):
        await spool.store(1, "a", "", cut())
    assert [p for p in spool.root.rglob("*") if p.is_file()] == [] and not spool.in_flight
