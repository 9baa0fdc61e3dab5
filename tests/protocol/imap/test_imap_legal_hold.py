"""Legal hold (issue 13.4 must-show): EXPUNGE, UID EXPUNGE, MOVE, DELETE, retention and account removal leave held mail untouched; release lets retention proceed."""

from __future__ import annotations

import asyncio
import imaplib
import re
from datetime import datetime, timedelta, timezone

import pytest

from mailboxes import retention
from mailboxes.errors import UnderHold

from .harness import ImapServer, message
from .test_imap_cleanup import login


@pytest.fixture
def srv(tmp_path, storage_url):
    s = ImapServer(tmp_path, storage_url=storage_url).start()
    yield s
    s.stop()


def subjects(c: imaplib.IMAP4) -> list[str]:
    typ, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK"
    return sorted(re.search(rb"Subject: (.*?)\r\n", part[1]).group(1).decode()
                  for part in data if isinstance(part, tuple))


def test_held_mail_survives_expunge_move_retention_and_removal_until_released(srv):
    for subj in ("Contract 7 draft", "Lunch on Friday", "Contract 7 final"):
        srv.deliver("alice", message(subj, f"body of {subj}", msgid=subj.replace(" ", "-")))
    store = srv.mb.store
    hold = srv.run(store.holds.add("case 7", actor="admin@city.test", account=srv.accounts["alice"],
                                   criteria={"subject": "contract 7"}))

    with login(srv, "alice") as c:
        assert c.select("INBOX")[0] == "OK"
        c.uid("STORE", "1:*", "+FLAGS", r"(\Deleted)")
        typ, data = c.expunge()
        # The unheld message is expunged (untagged EXPUNGE), the tagged reply says why the others stay.
        assert typ == "NO" and b"[CANNOT]" in data[0] and b"legal hold #%d (case 7)" % hold.id in data[0]
        assert subjects(c) == ["Contract 7 draft", "Contract 7 final"]
        typ, data = c.uid("EXPUNGE", "1")
        assert typ == "NO" and b"[CANNOT]" in data[0]
        # MOVE: the held message is copied to the destination and also kept in place (never lost).
        typ, data = c.uid("MOVE", "1", "Trash")
        assert typ == "OK"
        assert subjects(c) == ["Contract 7 draft", "Contract 7 final"]
        assert c.select("Trash")[0] == "OK" and subjects(c) == ["Contract 7 draft"]
        # DELETE of a folder holding held mail is refused, naming the hold.
        typ, data = c.delete("Trash")
        assert typ == "NO" and b"[CANNOT]" in data[0] and b"case 7" in data[0]

    # Retention: INBOX and Trash kept 1 day, a run "30 days later" removes nothing held.
    central = srv.mb.router.central
    srv.run(retention.set_policy(central, "inbox", 1, "delete"))
    srv.run(retention.set_policy(central, "trash", 1, "delete"))
    later = datetime.now(timezone.utc) + timedelta(days=30)
    dry = srv.run(retention.run(store, dry_run=True, now=later))
    assert (sum(i.due for i in dry.items), dry.kept, dry.deleted) == (3, 3, 0)
    rep = srv.run(retention.run(store, now=later))
    assert (rep.deleted, rep.kept) == (0, 3)

    # Account removal is refused, naming the hold, and removes nothing.
    with pytest.raises(UnderHold, match="case 7"):
        srv.run(store.purge_account(srv.accounts["alice"]))
    with login(srv, "alice") as c:
        assert c.select("INBOX")[0] == "OK" and subjects(c) == ["Contract 7 draft", "Contract 7 final"]
        c.send(b"a1 IDLE\r\n")  # a session watching INBOX sees retention's removals as plain EXPUNGEs
        assert c.readline().startswith(b"+")

        # Released: the next retention run proceeds (a later "now" than the last run's claim).
        srv.run(store.holds.release(hold.id, actor="admin@city.test"))
        rep = srv.run(retention.run(store, now=later + timedelta(minutes=1)))
        assert (rep.deleted, rep.kept) == (3, 0)
        seen = [c.readline(), c.readline()]
        assert all(re.match(rb"\* \d+ EXPUNGE", line) for line in seen), seen
        c.send(b"DONE\r\n")
        assert c.readline().startswith(b"a1 OK")
        assert c.select("INBOX")[1] == [b"0"]
    audit = srv.run(srv.mb.directory.audit_entries())
    assert any(e["action"] == "retention.run" for e in audit)


def test_account_and_department_holds_refuse_removal_of_every_message(srv):
    srv.deliver("bob", message("anything", "x", to="bob@city.test"))
    store = srv.mb.store
    bob = srv.accounts["bob"]
    h = srv.run(store.holds.add("bob's case", actor="admin@city.test", account=bob))
    with login(srv, "bob") as c:
        c.select("INBOX")
        c.store("1", "+FLAGS", r"(\Deleted)")
        assert c.expunge()[0] == "NO"
    with pytest.raises(UnderHold, match="bob's case"):
        srv.run(store.purge_account(bob))
    srv.run(store.holds.release(h.id, actor="admin@city.test"))
    assert srv.run(store.purge_account(bob)) == 1


def test_a_hold_on_nothing_or_bad_criteria_is_refused(srv):
    from mailboxes.errors import InvalidInput
    holds = srv.mb.store.holds
    with pytest.raises(InvalidInput):
        asyncio.run_coroutine_threadsafe(holds.add("x", actor="a"), srv.loop).result(30)
    with pytest.raises(InvalidInput, match="YYYY-MM-DD"):
        srv.run(holds.add("x", actor="a", criteria={"since": "yesterday"}))
    with pytest.raises(InvalidInput, match="unknown"):
        srv.run(holds.add("x", actor="a", criteria={"body": "x"}))
