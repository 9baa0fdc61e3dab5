"""Mailbox names that are not valid modified UTF-7: NO or an empty LIST, never BAD (RFC 3501 §5.1.3, §7.1.3)."""

from __future__ import annotations

import pytest

from .harness import Raw

# A raw "&" starts a shift sequence; "&Jjo" is unterminated; "&AGE-" encodes "a", which
# must be written plainly (non-canonical); "&U,BTFw-" is canonical (台北) and stays valid.
BAD_NAMES = [b'"&"', b'"Tax & Audit"', b'"&Jjo"', b'"&AGE-"', b'"a/&/b"']


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_name_gets_no_or_nothing_never_bad(server, name):
    c = Raw(server.port, login="alice@city.test")
    try:
        untagged, tagged = c.cmd(b"a1 SELECT " + name)
        assert tagged.startswith(b"a1 NO "), tagged
        assert b"[NONEXISTENT]" in tagged
        untagged, tagged = c.cmd(b"a2 EXAMINE " + name)
        assert tagged.startswith(b"a2 NO "), tagged
        untagged, tagged = c.cmd(b'a3 LIST "" ' + name)
        assert tagged.startswith(b"a3 OK"), tagged
        assert untagged == []
        untagged, tagged = c.cmd(b"a4 STATUS " + name + b" (MESSAGES)")
        assert tagged.startswith(b"a4 NO "), tagged
        untagged, tagged = c.cmd(b"a5 CREATE " + name)
        assert tagged.startswith(b"a5 NO [CANNOT]") and b"modified UTF-7" in tagged, tagged
        untagged, tagged = c.cmd(b"a6 RENAME INBOX " + name)
        assert tagged.startswith(b"a6 NO [CANNOT]"), tagged
        untagged, tagged = c.cmd(b"a7 DELETE " + name)
        assert tagged.startswith(b"a7 NO "), tagged
        # Nothing was created under any spelling, and the session goes on.
        untagged, tagged = c.cmd(b'a8 LIST "" "*"')
        assert tagged.startswith(b"a8 OK")
        assert not any(b"&" in line and b"&U,BTFw-" not in line for line in untagged), untagged
        untagged, tagged = c.cmd(b"a9 NOOP")
        assert tagged.startswith(b"a9 OK")
    finally:
        c.close()


def test_valid_modified_utf7_name_still_works(server):
    c = Raw(server.port, login="alice@city.test")
    try:
        assert c.cmd(b'b1 CREATE "&U,BTFw-"')[1].startswith(b"b1 OK")
        assert c.cmd(b'b2 SELECT "&U,BTFw-"')[1].startswith(b"b2 OK")
        untagged, tagged = c.cmd(b'b3 LIST "" "&U,BTFw-"')
        assert tagged.startswith(b"b3 OK") and len(untagged) == 1 and b"&U,BTFw-" in untagged[0]
    finally:
        c.close()
