"""Compose uploads over real HTTP: streamed to the account's spool, sent by id byte-exact, CSRF, limits, ownership, expiry."""

from __future__ import annotations

import email
import email.policy
import os
from datetime import timedelta

import aiohttp

from webmail.uploads import TTL
from webmail.views.uploads import UPLOADS

from .harness import Browser, csrf_of
from .test_compose import _form, _mails

NAME = "二〇二六年 预算（草案）·终稿.xlsx"


def _spool(web):
    return web.web.app[UPLOADS]


def _spool_files(web) -> list[str]:
    root = _spool(web).root
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def _upload(client: Browser, token: str | None, data: bytes, name: str = NAME, *,
                  content_type: str = "application/octet-stream", headers: dict | None = None):
    form = aiohttp.FormData(quote_fields=False)  # the file name as raw UTF-8, as browsers send it
    form.add_field("file", data, filename=name, content_type=content_type)
    hdrs = {"X-CSRF-Token": token} if token is not None else {}
    async with client.session.post(client.base + "/compose/upload", data=form, headers={**hdrs, **(headers or {})}) as r:
        return r.status, (await r.json() if r.content_type == "application/json" else await r.text())


async def _compose_token(client: Browser) -> str:
    _, page = await client.get("/compose")
    return csrf_of(page)


async def test_an_upload_is_spooled_then_sent_byte_exact_with_its_chinese_name_and_the_spool_emptied(web, client):
    await client.sign_in()
    token = await _compose_token(client)
    data = os.urandom(3 << 20) + "尾".encode()
    status, answer = await _upload(client, token, data)
    assert status == 201 and answer["name"] == NAME and answer["size"] == len(data)
    [blob, meta] = _spool_files(web)  # on disk under the data directory, in the account's own directory
    assert blob == f"{web.accounts['alice'].id}/{answer['id']}.data" and meta.endswith(".json")
    assert (web.tmp / "webmail-uploads").is_dir()

    r, page = await client.post("/compose", _form(token, mode="new", to="bob@city.test", subject="预算",
                                                  body="见附件", upload=answer["id"]))
    assert r.status == 200 and "folder=Sent" in str(r.url)
    [(_, raw)] = _mails(web, "bob")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == NAME and att.get_payload(decode=True) == data
    assert b"filename*0*=utf-8''" in raw  # RFC 2231 §3-4: charset-tagged, continued; RFC 6266 §4.3
    assert _spool_files(web) == []
    # the id is spent: sending it again finds nothing, and nothing is sent
    r, page = await client.post("/compose", _form(token, mode="new", to="bob@city.test", subject="again",
                                                  body="x", upload=answer["id"]))
    assert r.status == 404 and "有附件已失效" in page and 'value="again"' in page
    assert len(_mails(web, "bob")) == 1


async def test_an_upload_without_the_csrf_header_is_refused_and_nothing_is_stored(web, client):
    await client.sign_in()
    token = await _compose_token(client)
    status, _ = await _upload(client, None, b"data")
    assert status == 403
    form = aiohttp.FormData()  # the token as a form field is not read: the body is never parsed as a form
    form.add_field("csrf", token)
    form.add_field("file", b"data", filename="a.txt")
    async with client.session.post(client.base + "/compose/upload", data=form) as r:
        assert r.status == 403
    status, _ = await _upload(client, "wrong" + token, b"data")
    assert status == 403
    assert _spool_files(web) == []


async def test_an_oversize_upload_is_refused_with_413_and_nothing_is_left_in_the_spool(web, client):
    _spool(web).max_file_bytes = 1 << 20
    await client.sign_in()
    token = await _compose_token(client)
    status, answer = await _upload(client, token, b"x" * ((1 << 20) + 1))  # Content-Length known: refused at once
    assert status == 413 and "文件太大" in answer["error"] and "1 MB" in answer["error"]
    assert _spool_files(web) == []

    boundary = "postroomtestboundary"  # chunked, no Content-Length: refused while streaming, the part removed
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{NAME}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()

    async def body():
        yield head
        for _ in range(40):
            yield b"y" * (64 << 10)
        yield f"\r\n--{boundary}--\r\n".encode()
    async with client.session.post(client.base + "/compose/upload", data=body(), headers={
            "X-CSRF-Token": token, "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Accept-Language": "en"}) as r:
        assert r.status == 413
        assert (await r.json())["error"] == "The file is too large: at most 1 MB per file."
    assert _spool_files(web) == []
    status, answer = await _upload(client, token, b"z" * 1000)  # the server keeps serving
    assert status == 201


async def test_the_messages_total_is_limited_and_the_uploads_are_kept_for_the_user_to_remove(web, client):
    _spool(web).max_compose_bytes = 1 << 20
    await client.sign_in()
    token = await _compose_token(client)
    ids = [(await _upload(client, token, b"a" * (600 << 10), f"第{i}份.bin"))[1]["id"] for i in (1, 2)]
    form = _form(token, mode="new", to="bob@city.test", subject="two", body="x")
    for i in ids:
        form.add_field("upload", i)
    r, page = await client.post("/compose", form)
    assert r.status == 413 and "附件合计太大" in page
    assert all(f'name="upload" value="{i}"' in page for i in ids) and "第1份.bin" in page  # still listed
    async with client.session.post(client.base + "/compose/upload/remove", data={"id": ids[0]},
                                   headers={"X-CSRF-Token": token}) as resp:
        assert resp.status == 204
    r, page = await client.post("/compose", _form(token, mode="new", to="bob@city.test", subject="one", body="x",
                                                  upload=ids[1]))
    assert r.status == 200 and _spool_files(web) == [] and len(_mails(web, "bob")) == 1


async def test_another_accounts_upload_id_is_not_found(web, client):
    await client.sign_in()
    token = await _compose_token(client)
    _, answer = await _upload(client, token, "机密".encode())
    bob = Browser(web.url)
    try:
        await bob.sign_in("bob@city.test")
        bob_token = await _compose_token(bob)
        r, page = await bob.post("/compose", _form(bob_token, mode="new", to="bob@city.test", subject="steal",
                                                   body="x", upload=answer["id"]))
        assert r.status == 404 and "机密" not in page
        r, _ = await bob.post("/compose/draft", _form(bob_token, mode="new", subject="steal", upload=answer["id"]))
        assert r.status == 404
        r, _ = await bob.post("/compose/upload/remove", {"csrf": bob_token, "id": answer["id"]})
        assert r.status == 404
    finally:
        await bob.close()
    assert _mails(web, "bob") == [] and len(_spool_files(web)) == 2  # alice's upload is untouched
    r, _ = await client.post("/compose", _form(token, mode="new", to="bob@city.test", subject="mine", body="x",
                                               upload=answer["id"]))
    assert r.status == 200 and len(_mails(web, "bob")) == 1


async def test_uploads_expire_and_are_swept_on_a_clock_the_test_moves(web, client):
    spool = _spool(web)
    now = spool.clock()
    spool.clock = lambda: now
    await client.sign_in()
    token = await _compose_token(client)
    _, old = await _upload(client, token, b"old")
    now += TTL - timedelta(seconds=1)  # not yet expired
    assert spool.get(web.accounts["alice"].id, old["id"]) is not None
    now += timedelta(seconds=2)
    _, fresh = await _upload(client, token, b"fresh")  # an upload after SWEEP_EVERY sweeps the spool
    assert _spool_files(web) == sorted(f"{web.accounts['alice'].id}/{fresh['id']}{s}" for s in (".data", ".json"))
    r, page = await client.post("/compose", _form(token, mode="new", to="bob@city.test", subject="late", body="x",
                                                  upload=old["id"]))
    assert r.status == 404 and _mails(web, "bob") == []
    now += TTL
    assert web.run(_sweep(spool)) == 1 and _spool_files(web) == []


async def _sweep(spool):
    return spool.sweep()


async def test_a_draft_keeps_an_upload_and_the_spool_lets_it_go(web, client):
    await client.sign_in()
    token = await _compose_token(client)
    _, answer = await _upload(client, token, "草稿附件".encode(), "说明.txt", content_type="text/plain")
    r, page = await client.post("/compose/draft", _form(token, mode="new", to="bob@city.test", subject="草稿",
                                                        body="x", upload=answer["id"]))
    assert r.status == 200 and "/compose?draft=" in str(r.url) and "说明.txt" in page
    assert _spool_files(web) == []
    [(_, raw)] = _mails(web, "alice", "Drafts")
    [att] = email.message_from_bytes(raw, policy=email.policy.default).iter_attachments()
    assert att.get_filename() == "说明.txt" and att.get_content() == "草稿附件"


async def test_the_compose_page_states_the_limit_and_the_too_big_message_in_both_languages(web, client):
    await client.sign_in()
    for lang, limit, too_big in (("zh-CN", "每个文件最大 25 MB。", "“{name}”太大，无法添加：每个文件最大 25 MB。"),
                                 ("en", "Up to 25 MB per file.", "“{name}” is too large to attach: at most 25 MB per file.")):
        r, page = await client.get("/compose", headers={"Accept-Language": lang})
        assert r.status == 200 and limit in page and f'data-text-too-big="{too_big}"' in page, lang
        assert 'data-max-file="26214400"' in page and 'id="attachments" name="attachments" type="file"' in page
