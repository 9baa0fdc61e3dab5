"""The SMTP server driven by aiosmtplib: concurrent sessions, group commit, submission with STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import email

import pytest
import aiosmtplib

from .support import PASSWORD, message

SESSIONS = 20
PER_SESSION = 5


@pytest.mark.slow
async def test_concurrent_sessions_each_message_once_and_commits_are_shared(city):
    for i in range(SESSIONS):
        await city.add_user(f"u{i}@city.test")
    port = city.port("smtp")

    async def session(i: int) -> None:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, local_hostname="peer.example")
        await client.connect()
        for k in range(PER_SESSION):
            errors, resp = await client.sendmail(f"ext{i}@other.example", [f"u{i}@city.test"],
                                                 message(f"m{i}-{k}", sender=f"ext{i}@other.example",
                                                         to=f"u{i}@city.test"))
            assert errors == {} and resp.startswith("2.0.0 OK queued as ")
        await client.quit()

    await asyncio.gather(*(session(i) for i in range(SESSIONS)))
    for i in range(SESSIONS):
        subjects = sorted(email.message_from_bytes(m)["Subject"] for m in await city.inbox(f"u{i}@city.test"))
        assert subjects == [f"m{i}-{k}" for k in range(PER_SESSION)]
    committer = city.mb.store._committers["main"]
    assert committer.items == SESSIONS * PER_SESSION
    assert committer.batches < committer.items  # sessions shared transactions (group commit)


@pytest.mark.slow
async def test_submission_with_starttls_and_login_queues_remote_recipients_together(city):
    port = city.port("submission")

    async def submit(k: int) -> str:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=True, validate_certs=False,
                                 username="zhang.wei@city.test", password=PASSWORD, local_hostname="pc.city.test")
        await client.connect()
        errors, resp = await client.sendmail(
            "zhang.wei@city.test", ["li.na@city.test", f"r{k}@remote.example", f"R{k}@REMOTE.example"],
            message(f"s{k}", to=f"li.na@city.test, r{k}@remote.example"))
        await client.quit()
        assert errors == {}
        return resp.rsplit(" ", 1)[1]

    qids = await asyncio.gather(*(submit(k) for k in range(10)))
    assert len(await city.inbox("li.na@city.test")) == 10
    entries = {e.queue_id: e for e in await city.parts.queue.entries()}
    assert set(entries) == set(qids)
    for k, qid in enumerate(qids):
        # The domain is case-insensitive; the local part is kept as given (RFC 5321 §2.4).
        assert sorted(r.rcpt for r in entries[qid].recipients) == sorted({f"r{k}@remote.example",
                                                                          f"R{k}@remote.example"})
