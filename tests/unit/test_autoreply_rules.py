"""The pure parts of per-account delivery: the header read once, rules in order, the RFC 3834 decisions and the reply."""

from __future__ import annotations

from datetime import datetime, timezone

from delivery.autoreply import MAX_REFERENCES, Placement, build_reply, no_reply_reason, place, read_head
from mailboxes.mailsettings import DeliverySettings, OutOfOffice, Rule
from mailboxes.model import Flag

ME = DeliverySettings(OutOfOffice(True), (), frozenset({"li.na@city.test", "office@city.test"}))


def head(extra: str = "", *, to: str = "Li Na <li.na@city.test>", subject: str = "hello") -> bytes:
    return (f"Return-Path: <a@outside.example>\r\nFrom: =?utf-8?b?546L6Iqz?= <Wang.Fang@Outside.example>\r\n"
            f"To: {to}\r\nSubject: {subject}\r\nMessage-ID: <m1@outside.example>\r\n{extra}\r\nbody\r\n").encode()


def test_the_head_is_read_once_with_the_projects_parser():
    h = read_head(head("Cc: office@City.test\r\nReferences: <a@x>\r\n <b@x>\r\nList-Id: News <News.Outside.Example>\r\n"
                       "Auto-Submitted: Auto-Replied; owner-email=x\r\nPrecedence: Bulk\r\n",
                       subject="=?utf-8?b?57Sn5oClIOe0p+aApQ==?="))
    assert "王芳" in h.from_text and "Wang.Fang@Outside.example" in h.from_text
    assert h.to_cc == {"li.na@city.test", "office@city.test"}
    assert h.subject == "紧急 紧急" and h.message_id == "<m1@outside.example>" and h.references == "<a@x> <b@x>"
    assert h.list_id == "news.outside.example" and h.list_fields
    assert h.auto_submitted == "auto-replied" and h.precedence == "bulk"
    assert not read_head(head()).list_fields and read_head(head()).list_id == ""


def test_rules_apply_in_order_and_stop_ends_them():
    rules = (Rule(1, "from", "wang.fang@", "folder", "Work"), Rule(2, "subject", "HELLO", "flag", "\\Flagged"),
             Rule(3, "to", "office@", "flag", "Office"), Rule(4, "list-id", "x", "folder", "Lists"),
             Rule(5, "from", "王芳", "stop"), Rule(6, "subject", "hello", "seen"))
    got = place(rules, read_head(head("Cc: office@city.test\r\n")))
    assert got == Placement("Work", int(Flag.FLAGGED), ("Office",))
    assert place((), read_head(head())) == Placement()
    lists = (Rule(1, "list-id", "<news.outside.example>", "folder", "Lists"),)
    assert place(lists, read_head(head("List-Id: <news.outside.example>\r\n"))).folder == "Lists"
    assert place(lists, read_head(head("List-Id: <other.news.outside.example>\r\n"))).folder == "INBOX"


def test_who_gets_no_reply():
    ok = read_head(head())
    assert no_reply_reason("a@outside.example", ok, ME) is None
    assert no_reply_reason("a@outside.example", read_head(head(to="Office <office@city.test>")), ME) is None
    assert no_reply_reason("", ok, ME) == "null sender"
    assert no_reply_reason("a@outside.example", read_head(head("Auto-Submitted: no\r\n")), ME) is None
    for extra in ("Auto-Submitted: auto-generated\r\n", "List-Post: <mailto:l@x>\r\n", "Precedence: list\r\n"):
        assert no_reply_reason("a@outside.example", read_head(head(extra)), ME) is not None, extra
    for robot in ("MAILER-DAEMON@x.example", "owner-staff@x.example", "staff-request@x.example",
                  "LISTSERV@x.example", "li.na@city.test"):
        assert no_reply_reason(robot, ok, ME) is not None, robot
    assert no_reply_reason("a@outside.example", read_head(head(to="team@city.test")), ME) == "not addressed directly"


def test_the_reply_carries_rfc_3834_fields_and_is_itself_never_answered():
    refs = " ".join(f"<r{i}@x>" for i in range(40))
    data = build_reply(account_address="li.na@city.test", display_name="李娜", to="a@outside.example",
                       subject="", body="不在办公室。\nOut of office.", head=read_head(head(f"References: {refs}\r\n")),
                       hostname="mail.city.test", now=datetime(2026, 12, 4, tzinfo=timezone.utc))
    h = read_head(data)
    assert h.auto_submitted == "auto-replied" and h.subject == "Auto: hello"
    assert h.to_cc == {"a@outside.example"} and "李娜" in h.from_text
    assert h.references.split()[-1] == "<m1@outside.example>" and len(h.references.split()) == MAX_REFERENCES
    assert b"In-Reply-To: <m1@outside.example>\r\n" in data and b"\r\n\r\n" in data
    assert no_reply_reason("li.na@city.test", h, DeliverySettings(OutOfOffice(True), (),
                                                                  frozenset({"a@outside.example"}))) is not None
