"""Logins as an IMAP client sees them: parallel guesses throttled, equal work for unknown accounts, escaped logs, cache.

Each test wraps a real Argon2 hasher to count verifications (tests/support/hashers.py).
"""

from __future__ import annotations

import imaplib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from mailboxes.partitions import StorageConfig
from mailboxes.service import open_mailboxes
from tests.conftest import FAST_HASHER
from tests.support.hashers import counting

from .harness import PASSWORD, ImapServer, Raw


def _login(port: int, user: str, password: str) -> str:
    """'OK', or the text of the NO."""
    c = imaplib.IMAP4("127.0.0.1", port, timeout=60)
    try:
        return c.login(user, password)[0]
    except imaplib.IMAP4.error as exc:
        return str(exc)
    finally:
        c.shutdown()


def test_thirty_parallel_wrong_passwords_check_at_most_the_limit(tmp_path):
    # The gate holds the first two verifications until both run: every attempt the server
    # admits at once is in flight together (before the fix all 30 were).
    hasher = counting(gate=2)
    srv = ImapServer(tmp_path, limits={"auth_failures": 5}, hasher=hasher, hash_slots=2).start()
    try:
        hasher.reset()
        clients = [imaplib.IMAP4("127.0.0.1", srv.port, timeout=60) for _ in range(30)]
        start = threading.Barrier(30)

        def guess(i: int) -> str:
            start.wait()
            try:
                return clients[i].login("alice@city.test", f"guess-{i}")[0]
            except imaplib.IMAP4.error as exc:
                return str(exc)

        with ThreadPoolExecutor(30) as pool:
            answers = list(pool.map(guess, range(30)))
        failed = [a for a in answers if "AUTHENTICATIONFAILED" in a]
        throttled = [a for a in answers if "UNAVAILABLE" in a]
        assert hasher.verifications <= 5
        assert len(failed) == hasher.verifications and len(throttled) == 30 - len(failed)
        assert "UNAVAILABLE" in _login(srv.port, "alice@city.test", PASSWORD)  # still throttled
        for c in clients:
            c.shutdown()
    finally:
        srv.stop()


# Failed logins that must cost the same (carol is a disabled account); benchmarks/latency_bench.py times them.
FAILED_LOGINS = {"real account, wrong password": ("alice@city.test", "wrong"),
                 "unknown account": ("nobody@city.test", "wrong"),
                 "disabled account, right password": ("carol@city.test", PASSWORD),
                 "not an address": ("no-at-sign", "wrong")}


def with_a_disabled_carol(srv: ImapServer) -> ImapServer:
    srv.run(srv.add_account("carol"))
    srv.run(srv.mb.directory.set_enabled("carol@city.test", False))
    _login(srv.port, "nobody@city.test", "warm-up")  # the dummy hash is made once, on first use
    return srv


def test_unknown_and_disabled_accounts_cost_what_a_real_one_costs(tmp_path):
    """Every failed login verifies one Argon2 hash; the times themselves are benchmarks/latency_bench.py's (login)."""
    hasher = counting()
    srv = with_a_disabled_carol(ImapServer(tmp_path, hasher=hasher).start())
    try:
        answers = set()
        for _ in range(2):
            for name, (user, pw) in FAILED_LOGINS.items():
                hasher.reset()
                answers.add(_login(srv.port, user, pw))
                assert hasher.verifications == 1, name  # the unknown path verifies too
        assert len(answers) == 1 and "AUTHENTICATIONFAILED" in answers.pop()  # one reply for every case
    finally:
        srv.stop()


@pytest.mark.parametrize("how", ["literal", "authenticate"])
def test_a_user_name_with_crlf_cannot_forge_a_log_line(server, caplog, how):
    caplog.set_level(logging.INFO, logger="postroom")
    forged = b"x\r\nauth ok protocol=imap user=bob@city.test ip=10.0.0.9"
    c = Raw(server.port)
    if how == "literal":
        c.send(b"a LOGIN {%d}\r\n" % len(forged))
        assert c.line().startswith(b"+")
        c.send(forged + b" wrong\r\n")
        _, tagged = c.until(b"a")
    else:
        import base64

        _, tagged = c.cmd(b"a AUTHENTICATE PLAIN " + base64.b64encode(b"\0" + forged + b"\0wrong"))
    assert tagged.startswith(b"a NO [AUTHENTICATIONFAILED]")
    c.close()
    auth = [r.getMessage() for r in caplog.records if r.name == "postroom.auth"]
    assert len(auth) == 1 and auth[0].startswith("auth failed protocol=imap user=x\\r\\nauth")
    assert not any("\n" in m or "\r" in m for m in (r.getMessage() for r in caplog.records))
    assert "auth ok" not in caplog.text  # spaces are escaped too: one field stays one token


@pytest.mark.parametrize("node", ["same process", "another node"])
def test_cached_credentials_end_at_once_on_every_change(tmp_path, node):
    hasher = counting()
    srv = ImapServer(tmp_path, hasher=hasher).start()
    other = srv.run(open_mailboxes(StorageConfig(url=srv.storage_url), hasher=FAST_HASHER))
    d = (srv.mb if node == "same process" else other).directory
    try:
        user = "alice@city.test"
        hasher.reset()
        assert _login(srv.port, user, PASSWORD) == "OK"
        assert _login(srv.port, user, PASSWORD) == "OK"
        assert hasher.verifications == 1  # the second login came from the cache

        srv.run(d.set_password(user, "new-password"))
        assert "AUTHENTICATIONFAILED" in _login(srv.port, user, PASSWORD)  # at once, not after the TTL
        assert _login(srv.port, user, "new-password") == "OK"

        srv.run(d.set_enabled(user, False))
        assert "AUTHENTICATIONFAILED" in _login(srv.port, user, "new-password")
        srv.run(d.set_enabled(user, True))
        assert _login(srv.port, user, "new-password") == "OK"

        app = srv.run(srv.mb.directory.add_app_password(user, "phone"))
        assert _login(srv.port, user, app) == "OK"
        hasher.reset()
        assert _login(srv.port, user, app) == "OK" and hasher.verifications == 0
        [(app_id, _, _)] = srv.run(d.list_app_passwords(user))
        srv.run(d.revoke_app_password(user, app_id))
        assert "AUTHENTICATIONFAILED" in _login(srv.port, user, app)
        assert _login(srv.port, user, "new-password") == "OK"  # the password itself still works

        srv.run(d.remove_account(user))
        assert "AUTHENTICATIONFAILED" in _login(srv.port, user, "new-password")
    finally:
        srv.run(other.close())
        srv.stop()


@pytest.mark.slow
def test_a_storm_of_right_passwords_from_one_address_all_get_in(tmp_path):
    """Slots in flight must not turn a NAT full of staff into throttled failures."""
    hasher = counting()
    srv = ImapServer(tmp_path, limits={"auth_failures": 3}, hasher=hasher, hash_slots=1).start()
    try:
        users = ["alice", "bob"] + [f"u{i}" for i in range(10)]
        for u in users[2:]:
            srv.run(srv.add_account(u))
        hasher.reset()
        with ThreadPoolExecutor(40) as pool:
            answers = list(pool.map(lambda i: _login(srv.port, f"{users[i % len(users)]}@city.test", PASSWORD),
                                    range(60)))
        assert answers == ["OK"] * 60
        assert hasher.verifications <= len(users) + 3  # five connections per account: mostly shared or cached
    finally:
        srv.stop()
