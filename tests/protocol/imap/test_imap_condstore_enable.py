"""CONDSTORE enabled mid-session (RFC 7162 §3.1) and the MODSEQ of an ESEARCH MIN/MAX (RFC 4731 §3.2)."""

from __future__ import annotations

import re

import pytest

from .harness import Raw, message


def _modseq(line: bytes) -> int:
    return int(re.search(rb"MODSEQ \(?(\d+)", line).group(1))


@pytest.mark.parametrize("command", [
    b"FETCH 1 (MODSEQ)", b"FETCH 1 (FLAGS) (CHANGEDSINCE 1)", b"SEARCH MODSEQ 1",
    b"STORE 1 (UNCHANGEDSINCE 100000) +FLAGS (\\Seen)", b"STATUS INBOX (HIGHESTMODSEQ)",
])  # ENABLE is valid only before SELECT (RFC 5161 §3.1)
def test_enabling_command_on_a_selected_mailbox_reports_highestmodseq_first(server, command):
    for i in range(3):
        server.deliver("alice", message(f"m{i}", msgid=f"cs{i}"))
    c = Raw(server.port, login="alice@city.test")
    try:
        untagged, _ = c.cmd(b"s1 SELECT INBOX")
        highest = [ln for ln in untagged if b"[HIGHESTMODSEQ" in ln]
        assert len(highest) == 1  # SELECT always says it (RFC 7162 §3.1.2.1)
        n = int(re.search(rb"HIGHESTMODSEQ (\d+)", highest[0]).group(1))
        untagged, tagged = c.cmd(b"s2 " + command)
        assert tagged.startswith(b"s2 OK"), tagged
        assert untagged[0] == b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % n, untagged
        # Only the first enabling command says it.
        untagged, tagged = c.cmd(b"s3 " + command.replace(b"+FLAGS", b"-FLAGS"))
        assert tagged.startswith(b"s3 OK")
        assert not any(b"[HIGHESTMODSEQ" in ln for ln in untagged), untagged
    finally:
        c.close()


def test_no_highestmodseq_without_a_selected_mailbox(server):
    c = Raw(server.port, login="alice@city.test")
    try:
        untagged, tagged = c.cmd(b"e1 ENABLE CONDSTORE")
        assert tagged.startswith(b"e1 OK")
        assert not any(b"HIGHESTMODSEQ" in ln for ln in untagged)
    finally:
        c.close()


def test_esearch_min_max_modseq_is_that_of_the_returned_messages(server):
    for i in range(4):
        server.deliver("alice", message(f"m{i}", msgid=f"es{i}"))
    c = Raw(server.port, login="alice@city.test")
    try:
        c.cmd(b"a1 SELECT INBOX")
        c.cmd(b"a2 STORE 3 +FLAGS (\\Flagged)")  # message 3 gets the highest modseq
        mod = {}
        untagged, _ = c.cmd(b"a3 FETCH 1:4 (MODSEQ)")
        for ln in untagged:
            if b"FETCH" in ln:
                mod[int(ln.split()[1])] = _modseq(ln)
        assert mod[3] > max(mod[1], mod[2], mod[4])
        untagged, _ = c.cmd(b"a4 SEARCH RETURN (MIN) MODSEQ 1")
        assert untagged == [b'* ESEARCH (TAG "a4") MIN 1 MODSEQ %d\r\n' % mod[1]], untagged
        untagged, _ = c.cmd(b"a5 SEARCH RETURN (MAX) MODSEQ 1")
        assert untagged == [b'* ESEARCH (TAG "a5") MAX 4 MODSEQ %d\r\n' % mod[4]], untagged
        untagged, _ = c.cmd(b"a6 SEARCH RETURN (MIN MAX) MODSEQ 1")
        assert untagged == [b'* ESEARCH (TAG "a6") MIN 1 MAX 4 MODSEQ %d\r\n' % max(mod[1], mod[4])], untagged
        untagged, _ = c.cmd(b"a7 SEARCH RETURN (MIN COUNT) MODSEQ 1")  # COUNT: over every match
        assert untagged == [b'* ESEARCH (TAG "a7") MIN 1 COUNT 4 MODSEQ %d\r\n' % mod[3]], untagged
    finally:
        c.close()
