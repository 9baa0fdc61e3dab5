"""SORT and THREAD algorithms from the text of RFC 5256 (§2.1 base subject, §2.2 sent date, §2 threading, §3 keys) and RFC 5957."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from mailboxes.mime import parse_message
from mailserver.imap.sorting import MAX_SUBJECT_CHARS, MessageFacts, SortRecord, base_subject, casemap, facts_of, sort_order
from mailserver.imap.threads import ordered_subject, references, thread_lists

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("subject", "base", "marked"), [
    ("Re: [fwd: Subject] (fwd)", "Subject", True),  # steps 2, 3, 6
    ("Subject", "Subject", False),
    ("re: RE: Fwd: fw: FWD: hello", "hello", True),  # step 3, repeated (5)
    ("Re:hello", "hello", True),
    ("Re [2]: hello", "hello", True),  # subj-refwd carries an optional subj-blob
    ("Re[3]: hello", "hello", True),
    ("[PATCH] hello", "hello", False),  # step 4: a leading blob goes
    ("[PATCH]", "[PATCH]", False),  # ... unless nothing would be left
    ("[list] Re: [other] Re: topic", "topic", True),  # *subj-blob subj-refwd
    ("[a][b] [c] topic", "topic", False),
    ("hello (fwd) (FWD)", "hello", True),  # step 2: subj-trailer, repeated
    ("[Fwd: [fwd: inner]]", "inner", True),  # step 6, repeated from step 2
    ("[fwd: Re: x] (fwd)", "x", True),
    ("  hello \t  world  \r\n ", "hello world", False),  # step 1: WSP runs become one SP
    ("Reply: hello", "Reply: hello", False),  # "re" must be followed by WSP, a blob or ":"
    ("Re:", "", True),
    ("", "", False),
    ("Fwd (fwd)", "Fwd", True),
    ("[fwd:]", "", True),  # subj-fwd around an empty subject
    ("主题 Re: 测试", "主题 Re: 测试", False),
])
def test_base_subject_rfc5256_2_1(subject, base, marked):
    assert base_subject(subject) == (base, marked)


@pytest.mark.timeout(60)  # liveness only: the work is bounded by MAX_SUBJECT_CHARS (latency_bench.py, hostile)
def test_base_subject_is_bounded_on_hostile_subjects():
    for hostile in ("[a]" * 20000, "[" * 20000, "re " * 20000, "[fwd:" * 5000 + "x" + "]" * 5000,
                    "(fwd)" * 20000, "[x] " * 10000 + "re"):
        base, _ = base_subject(hostile)
        assert len(base) <= MAX_SUBJECT_CHARS


def test_casemap_is_i_ascii_casemap():
    assert casemap("abcXYZ_é") == "ABCXYZ_é"  # only a-z fold (RFC 4790 §9.2)
    assert casemap("straße") == "STRAßE"
    assert sorted(["_", "b", "A"], key=casemap) == ["A", "b", "_"]  # letters fold up: "_" (0x5F) after "B" (0x42)


def rec(seq: int, *, subject: str = "", sent: datetime | None = None, arrival: int = 0, size: int = 100,
        from_: str = "", to: str = "", cc: str = "", display_from: str = "", msgid: str = "", refs: str = "",
        irt: str = "") -> SortRecord:
    facts = MessageFacts(subject=subject, sent=sent, from_=from_, to=to, cc=cc, display_from=display_from,
                         message_id=msgid, references=refs, in_reply_to=irt)
    return SortRecord(seq, (T0 + timedelta(minutes=arrival)).timestamp(), size, facts)


def seqs(records, criteria) -> list[int]:
    return [records[p].seq for p in sort_order(records, criteria)]


def test_sort_keys_rfc5256_3():
    rs = [
        rec(1, subject="Re: beta", sent=T0 + timedelta(hours=2), arrival=3, size=300, from_="Zed", to="b", cc="x"),
        rec(2, subject="alpha", sent=None, arrival=1, size=100, from_="amy", to="a", cc=""),  # DATE: the arrival
        rec(3, subject="[list] Alpha", sent=T0 + timedelta(hours=1), arrival=2, size=200, from_="bob", to="c",
            cc="w"),
    ]
    assert seqs(rs, [("ARRIVAL", False)]) == [2, 3, 1]
    assert seqs(rs, [("DATE", False)]) == [2, 3, 1]  # §2.2: no Date: -> internal date (T0 + 1 min)
    assert seqs(rs, [("SIZE", False)]) == [2, 3, 1]
    assert seqs(rs, [("SUBJECT", False)]) == [2, 3, 1]  # base subjects: alpha = Alpha < beta
    assert seqs(rs, [("FROM", False)]) == [2, 3, 1]  # amy < bob < Zed (case-insensitive)
    assert seqs(rs, [("TO", False)]) == [2, 1, 3]
    assert seqs(rs, [("CC", False)]) == [2, 3, 1]  # an empty key sorts first
    assert seqs(rs, [("SIZE", True)]) == [1, 3, 2]  # REVERSE SIZE


def test_reverse_keeps_sequence_tie_break():
    """RFC 5256 §3 REVERSE reverses one criterion, not the implicit sequence-number tie-break."""
    rs = [rec(1, subject="b"), rec(2, subject="a"), rec(3, subject="b"), rec(4, subject="a")]
    assert seqs(rs, [("SUBJECT", True)]) == [1, 3, 2, 4]
    assert seqs(rs, [("SUBJECT", False)]) == [2, 4, 1, 3]
    rs2 = [rec(1, subject="x", size=5), rec(2, subject="x", size=9), rec(3, subject="a", size=9)]
    assert seqs(rs2, [("SUBJECT", False), ("SIZE", True)]) == [3, 2, 1]  # SUBJECT REVERSE SIZE
    assert seqs(rs2, [("SIZE", True), ("SUBJECT", False)]) == [3, 2, 1]


def test_display_keys_rfc5957_from_a_parsed_message():
    raw = (b"From: =?utf-8?q?Zo=C3=AB?= <aaa@city.test>\r\nTo: bob@city.test\r\nCc: group:;, <cc@x.test>\r\n"
           b"Subject: =?utf-8?q?Re=3A_caf=C3=A9?=\r\nDate: Mon, 02 Nov 2026 10:00:00 +0800\r\n"
           b"Message-ID: <m1@city.test>\r\nReferences: <r1@x.test>\r\n <r2@x.test>\r\n\r\nbody\r\n")
    p = parse_message(raw)
    f = facts_of(p.envelope, p.headers_decoded)
    assert (f.from_, f.to, f.cc) == ("aaa", "bob", "cc")  # RFC 5256: addr-mailbox; group markers skipped
    assert (f.display_from, f.display_to) == ("Zoë", "bob@city.test")  # RFC 5957 §3
    assert (f.base_subject, f.is_reply) == ("café", True)
    assert f.own_id() == "m1@city.test" and f.reference_ids() == ["r1@x.test", "r2@x.test"]
    assert f.sent == datetime(2026, 11, 2, 2, 0, tzinfo=timezone.utc)


def test_in_reply_to_is_the_reference_without_references():
    f = MessageFacts(in_reply_to="<a@x> <b@x>", references="no ids here")
    assert f.reference_ids() == ["a@x"]  # RFC 5256 §2 REFERENCES step 1: the first valid In-Reply-To ID


# ------------------------------------------------------------------ THREAD


def day(n: int) -> datetime:
    return T0 + timedelta(days=n)


def lists(roots) -> bytes:
    return thread_lists(roots, lambda r: r.seq)


def test_orderedsubject_rfc5256_2():
    rs = [rec(1, subject="Hello", sent=day(3)), rec(2, subject="Re: hello", sent=day(1)),
          rec(3, subject="Other", sent=day(2)), rec(4, subject="Fwd: Hello", sent=day(4)),
          rec(5, subject="Re: other", sent=day(5))]
    # threads by base subject; first by date is the parent, the rest its children (siblings), no grandchildren
    assert lists(ordered_subject(rs)) == b"(2 (1)(4))(3 5)"


def test_references_rfc5256_2():
    rs = [
        rec(1, subject="A", sent=day(1), msgid="<1@x>"),
        rec(2, subject="Re: A", sent=day(2), msgid="<2@x>", refs="<1@x>"),
        rec(3, subject="Re: A", sent=day(3), msgid="<3@x>", refs="<1@x> <2@x>"),
        rec(4, subject="B", sent=day(4), msgid="<4@x>"),
        rec(5, subject="C", sent=day(5), msgid="<5@x>", refs="<gone@x>"),
        rec(6, subject="Re: C", sent=day(6), msgid="<6@x>", refs="<gone@x>"),
        rec(7, subject="Re: B", sent=day(7), msgid="<7@x>"),  # no references: joined to B by subject (5C)
        rec(8, subject="Re: A", sent=day(0), msgid="<8@x>", refs="<2@x>"),  # sibling of 3, older
    ]
    # (1A/1B) links; (3) the dummy for <gone@x> stays at the top with two children; (5) 7 under 4;
    # (6) siblings by date: 8 (day 0) before 3 (day 3)
    assert lists(references(rs)) == b"(1 2 (8)(3))(4 7)((5)(6))"


def test_references_dummy_promotion_and_duplicate_ids():
    rs = [
        rec(1, subject="x", sent=day(1), msgid="<dup@x>"),
        rec(2, subject="y", sent=day(2), msgid="<dup@x>"),  # a repeated ID: treated as unique (1A)
        rec(3, subject="z", sent=day(3), msgid="<3@x>", refs="<lost1@x> <lost2@x>"),  # dummies, one child each
        rec(4, subject="w", sent=day(4), irt="<3@x>"),  # In-Reply-To only; no Message-ID
    ]
    assert lists(references(rs)) == b"(1)(2)(3 4)"


def test_references_subject_merge_makes_a_dummy():
    rs = [rec(1, subject="Same", sent=day(1), msgid="<1@x>"), rec(2, subject="same", sent=day(2), msgid="<2@x>")]
    assert lists(references(rs)) == b"((1)(2))"  # neither is a reply: both under a new dummy (5C)


def test_references_loops_are_not_made():
    rs = [rec(1, subject="a", sent=day(1), msgid="<1@x>", refs="<2@x>"),
          rec(2, subject="b", sent=day(2), msgid="<2@x>", refs="<1@x>"),
          rec(3, subject="c", sent=day(3), msgid="<3@x>", refs="<3@x>"),  # refers to itself
          rec(4, subject="d", sent=day(4), msgid="<4@x>", refs="<5@x> <4@x> <5@x>")]
    out = lists(references(rs))
    assert sorted(int(x) for x in out.replace(b"(", b" ").replace(b")", b" ").split()) == [1, 2, 3, 4]


@pytest.mark.timeout(60)  # liveness only: O(n log n); a quadratic loop takes minutes (latency_bench.py, hostile)
def test_deep_chain_needs_no_recursion():
    n = 10_000
    rs = [rec(i, subject="Re: chain", sent=day(0) + timedelta(seconds=i), msgid=f"<{i}@x>",
              refs=f"<{i - 1}@x>" if i > 1 else "") for i in range(1, n + 1)]
    out = lists(references(rs))
    assert out == b"(" + b" ".join(b"%d" % i for i in range(1, n + 1)) + b")"
    rs = [rec(i, subject=f"s{i % 7}", sent=day(i % 3), msgid=f"<{i}@x>", refs=f"<{i // 2}@x>" if i > 1 else "")
          for i in range(1, n + 1)]  # a binary tree: nested lists ~13 deep, 10,000 wide
    assert lists(references(rs)).count(b"(") == lists(references(rs)).count(b")")


def test_thread_lists_rfc5256_4_example():
    """The example response of RFC 5256 §4: (2)(3 6 (4 23)(44 7 96))."""
    from mailserver.imap.threads import Node

    def n(seq, *kids):
        node = Node(rec(seq))
        for k in kids:
            node.adopt(k)
        return node

    roots = [n(2), n(3, n(6, n(4, n(23)), n(44, n(7, n(96)))))]
    assert lists(roots) == b"(2)(3 6 (4 23)(44 7 96))"
    dummy = Node()
    dummy.adopt(n(3))
    dummy.adopt(n(5))
    assert lists([dummy]) == b"((3)(5))"
    assert lists([]) == b""


def test_references_cycle_through_a_dummy_keeps_the_first_link():
    """1A/1B: y names (z, x); z names y. Linking y under z would close a loop, so z stays the root.

    Without x (expunged), x is a dummy inside the chain and is pruned (step 3). Dovecot answers the same.
    """
    x = rec(1, sent=day(0) + timedelta(hours=17), msgid="<x@t>")
    y = rec(2, sent=day(0) + timedelta(hours=15), msgid="<y@t>", refs="<z@t> <x@t>")
    z = rec(3, sent=day(0) + timedelta(hours=16), msgid="<z@t>", refs="<y@t>")
    assert lists(references([x, y, z])) == b"(3 1 2)"
    y1 = rec(1, sent=y.facts.sent, msgid="<y@t>", refs="<z@t> <x@t>")
    z2 = rec(2, sent=z.facts.sent, msgid="<z@t>", refs="<y@t>")
    assert lists(references([y1, z2])) == b"(2 1)"


def test_subject_sort_collation_and_ties():
    rs = [rec(1, subject="m", size=3), rec(2, subject="N", size=5), rec(3, subject="_under"), rec(4, subject="[tag]"),
          rec(5, subject="[ann] FW: [x] re: Fwd: m (FWD)  (fwd)", size=9), rec(6, subject="m (n)"),
          rec(7, subject="Re: [FWD: n]", size=7), rec(8)]
    # "" < M = M < "M (N)" < N = N < "[TAG]" (0x5B) < "_UNDER" (0x5F): letters fold up before comparing
    assert seqs(rs, [("SUBJECT", False)]) == [8, 1, 5, 6, 2, 7, 4, 3]
    assert seqs(rs, [("SUBJECT", True)]) == [3, 4, 2, 7, 6, 1, 5, 8]
    assert seqs(rs, [("SUBJECT", False), ("SIZE", True)]) == [8, 5, 1, 6, 7, 2, 4, 3]
