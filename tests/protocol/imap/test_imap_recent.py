"""\\Recent across sessions and server instances (RFC 3501 §2.3.2): exactly one session is told a message is recent."""

from __future__ import annotations

import contextlib

import pytest

from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from mailserver import tls
from mailserver.app import Context
from mailserver.auth import Authenticator
from mailserver.imap.server import start
from tests.conftest import FAST_HASHER

from .harness import ImapServer, Raw, message


class SecondNode(ImapServer):
    """Another Postroom process on the same database: its own Store, bus and IMAP listener, no set-up of its own."""

    async def _start(self) -> None:
        self.mb = await open_mailboxes(StorageConfig(url=self.storage_url), hasher=FAST_HASHER)
        auth = Authenticator.create(self.mb.directory, max_failures=1000, window_s=300)
        ctx = Context(self.config, self.mb, self.mb.store.bus, auth, tls.server_context(self.cert, self.key))
        [self.service] = await start(ctx)
        self.services = [self.service]


def select(c: Raw, tag: bytes, verb: bytes = b"SELECT") -> list[bytes]:
    untagged, tagged = c.cmd(tag + b" " + verb + b" INBOX")
    assert tagged.startswith(tag + b" OK"), tagged
    return [u for u in untagged if u.endswith(b" RECENT\r\n") or u.endswith(b" EXISTS\r\n")]


def recent_uids(c: Raw, tag: bytes) -> list[bytes]:
    untagged, _ = c.cmd(tag + b" UID SEARCH RECENT")
    return untagged


def test_two_sessions_in_one_server(server):
    server.deliver("alice", message("one"))
    server.deliver("alice", message("two"))
    looker, first, second = (Raw(server.port, login="alice@city.test") for _ in range(3))
    assert select(looker, b"a", b"EXAMINE") == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]  # sees, does not take
    assert select(first, b"a") == [b"* 2 EXISTS\r\n", b"* 2 RECENT\r\n"]
    assert first.cmd(b"b FETCH 1:2 FLAGS")[0] == [b"* 1 FETCH (FLAGS (\\Recent))\r\n",
                                                 b"* 2 FETCH (FLAGS (\\Recent))\r\n"]
    assert select(second, b"a") == [b"* 2 EXISTS\r\n", b"* 0 RECENT\r\n"]
    assert recent_uids(second, b"b") == [b"* SEARCH\r\n"]
    # New mail while both have INBOX selected: the first to be told of it gets it.
    server.deliver("alice", message("three"))
    assert second.cmd(b"c NOOP")[0] == [b"* 3 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert first.cmd(b"c NOOP")[0] == [b"* 3 EXISTS\r\n", b"* 2 RECENT\r\n"]  # its two from SELECT
    assert recent_uids(second, b"d") == [b"* SEARCH 3\r\n"] and recent_uids(first, b"d") == [b"* SEARCH 1 2\r\n"]
    other = Raw(server.port, login="alice@city.test")
    assert other.cmd(b"a STATUS INBOX (RECENT)")[0] == [b"* STATUS INBOX (RECENT 0)\r\n"]
    for c in (looker, first, second, other):
        c.close()


@pytest.fixture
def two_nodes(tmp_path, storage_url):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with contextlib.ExitStack() as stack:  # both are stopped, and an error stopping either fails the test
        a = ImapServer(tmp_path / "a", storage_url=storage_url).start()
        stack.callback(a.stop)
        b = SecondNode(tmp_path / "b", storage_url=storage_url).start()
        stack.callback(b.stop)
        b.accounts = a.accounts
        yield a, b


def test_two_server_instances_on_one_database(two_nodes):
    a, b = two_nodes
    a.deliver("alice", message("one"))
    on_b = Raw(b.port, login="alice@city.test")
    on_a = Raw(a.port, login="alice@city.test")
    assert on_b.cmd(b"s STATUS INBOX (RECENT)")[0] == [b"* STATUS INBOX (RECENT 1)\r\n"]
    assert select(on_b, b"a") == [b"* 1 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert select(on_a, b"a") == [b"* 1 EXISTS\r\n", b"* 0 RECENT\r\n"]  # node a's session is second
    assert on_a.cmd(b"s STATUS INBOX (RECENT)")[0] == [b"* STATUS INBOX (RECENT 0)\r\n"]
    # Mail delivered through node b while both nodes' sessions have INBOX selected.
    b.deliver("alice", message("two"))
    assert on_a.cmd(b"c NOOP")[0] == [b"* 2 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert on_b.cmd(b"c NOOP")[0] == [b"* 2 EXISTS\r\n", b"* 1 RECENT\r\n"]  # still only its first
    assert recent_uids(on_a, b"d") == [b"* SEARCH 2\r\n"] and recent_uids(on_b, b"d") == [b"* SEARCH 1\r\n"]
    on_a.close()
    on_b.close()
