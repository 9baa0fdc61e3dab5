"""Debian's swaks against the running server: STARTTLS, AUTH PLAIN, a message with attachments, read back byte for byte."""

from __future__ import annotations

import asyncio
import email
import os
import re
import shutil

import pytest

from .support import PASSWORD

pytestmark = [pytest.mark.interop,
              pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed (make test installs it)")]


async def swaks(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec("swaks", *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode, out.decode("utf-8", "replace")


def wire_data(transcript: str) -> bytes:
    """The message as swaks sent it: the lines it shows between DATA's 354 and the lone dot, dot-unstuffed."""
    lines = transcript.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("<~  354")) + 1
    body = []
    for line in lines[start:]:
        assert line.startswith(" ~> "), line
        text = line[4:]
        if text == ".":
            break
        body.append(text[1:] if text.startswith("..") else text)
    return ("\r\n".join(body) + "\r\n").encode("utf-8")


async def test_swaks_starttls_auth_plain_with_attachments_reads_back_byte_for_byte(city, tmp_path):
    blob = tmp_path / "scan.bin"
    blob.write_bytes(os.urandom(6000) + bytes(range(256)))
    notice = tmp_path / "通知.txt"
    notice.write_text("关于召开年度工作会议的通知\n请各部门准时参加。\n", encoding="utf-8")
    code, transcript = await swaks(
        "--server", "127.0.0.1", "--port", str(city.port("submission")), "--ehlo", "swaks.city.test",
        "--tls", "--auth", "PLAIN", "--auth-user", "zhang.wei@city.test", "--auth-password", PASSWORD,
        "--from", "zhang.wei@city.test", "--to", "li.na@city.test", "--header", "Subject: swaks interop",
        "--body", "Please see the attachments.", "--attach-type", "application/octet-stream",
        "--attach", f"@{blob}", "--attach-type", "text/plain", "--attach", f"@{notice}")
    assert code == 0, transcript
    assert " -> STARTTLS" in transcript and "<-  220 " in transcript
    assert " ~> AUTH PLAIN" in transcript and "<~  235 2.7.0" in transcript
    qid = re.search(r"<~  250 2\.0\.0 OK queued as (\S+)", transcript).group(1)
    sent = wire_data(transcript)
    [stored] = await city.inbox("li.na@city.test")
    assert stored.endswith(sent)  # exactly what swaks put on the wire, after the trace header we prepend
    added = stored[: -len(sent)].decode()
    # RFC 5321 §4.4: final delivery adds Return-Path (the envelope sender), then our trace header.
    return_path, received = added.split("\r\n", 1)
    assert return_path == "Return-Path: <zhang.wei@city.test>"
    assert received.startswith("Received: from swaks.city.test") and f"id {qid}" in received
    assert "with ESMTPSA (version=TLS" in received and received.count("\r\n") == 4  # four lines
    parts = {p.get_filename(): p.get_payload(decode=True) for p in email.message_from_bytes(stored).walk()
             if p.get_filename()}
    assert parts["scan.bin"] == blob.read_bytes()  # the attachment decodes to the file's bytes
    assert notice.read_bytes() in parts.values()
