"""Hypothesis properties of the IMAP command parser: chunking invariance, only-our-events fuzzing, round-trips."""

from __future__ import annotations

import os
import random
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailserver.imap import commands as c
from mailserver.imap.clientwire import command_to_bytes
from mailserver.imap.grammar import (
    NEED_DATA,
    BadCharset,
    Command,
    CommandParser,
    ConnectionClosed,
    ContinuationLine,
    LimitExceeded,
    NeedContinuation,
    ParseError,
)
from mailserver.imap.mutf7 import decode_mutf7, encode_mutf7
from mailserver.imap.sorting import SORT_KEYS
from mailserver.imap.syntax import SEARCH_CHARSETS

EVENT_TYPES = (Command, NeedContinuation, ContinuationLine, ParseError, BadCharset, LimitExceeded, ConnectionClosed)
# IMAP_PROP_EXAMPLES=5000 for a long local hunt; the default keeps the file at a few seconds.
EXAMPLES = int(os.environ.get("IMAP_PROP_EXAMPLES", "300"))
FAST = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ strategies for commands

U32 = st.integers(1, 2**32 - 1)
U63 = st.integers(0, 2**63 - 1)
tags = st.from_regex(r"[A-Za-z0-9.\-]{1,8}", fullmatch=True)
texts = st.text(max_size=12)
mailboxes = texts.filter(lambda n: n.upper() != "INBOX") | st.just("INBOX")
atoms_upper = st.from_regex(r"[A-Z][A-Z0-9=\-]{0,10}", fullmatch=True)
keywords = st.from_regex(r"[A-Za-z$][A-Za-z0-9$_\-]{0,10}", fullmatch=True)
system_flags = st.sampled_from(["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"])
flags = st.lists(system_flags | keywords, max_size=4).map(tuple)
bound = st.none() | U32


@st.composite
def seqsets(draw, star: bool = True, saved: bool = True):
    if saved and draw(st.integers(0, 9)) == 0:
        return c.SequenceSet(saved=True)
    ends = bound if star else U32
    ranges = draw(st.lists(st.tuples(ends, ends), min_size=1, max_size=4))
    return c.SequenceSet(tuple(ranges))


dates = st.dates(date(1000, 1, 1), date(9999, 12, 31))
zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
date_times = st.builds(
    lambda d, h, mi, s, tz: datetime(d.year, d.month, d.day, h, mi, s, tzinfo=tz),
    dates, st.integers(0, 23), st.integers(0, 59), st.integers(0, 59), zones,
)  # fmt: skip
SEARCH_KEYS = {"bcc", "cc", "from", "subject", "to"}  # RFC 3501 §6.4.4 header shortcuts
header_names = st.from_regex(r"[a-z][a-z0-9\-]{0,12}", fullmatch=True)

search_leaves = st.one_of(
    st.just(c.SearchAll()),
    st.builds(c.SearchFlag, system_flags | st.just("\\Recent") | keywords, st.booleans()),
    st.builds(c.SearchDate, st.sampled_from(["internal", "sent"]), st.sampled_from(["before", "on", "since"]), dates),
    st.builds(c.SearchSize, st.sampled_from(["larger", "smaller"]), st.integers(0, 2**32 - 1)),
    # HEADER name (by_name) for any field; the FROM/TO/CC/BCC/SUBJECT keys are not HEADER From etc.
    st.builds(lambda name, value, by_name: c.SearchHeader(name, value, by_name or name not in SEARCH_KEYS),
              header_names | st.sampled_from(sorted(SEARCH_KEYS)), texts, st.booleans()),
    st.builds(c.SearchText, st.sampled_from(["body", "text"]), texts),
    st.builds(c.SearchSeq, seqsets(), st.booleans()),
    st.builds(c.SearchModSeq, U63),
    st.builds(c.SearchModSeq, U63, system_flags | keywords, st.sampled_from(["priv", "shared", "all"])),
)
search_keys = st.recursive(
    search_leaves,
    lambda inner: st.one_of(
        st.builds(c.SearchNot, inner),
        st.builds(c.SearchOr, inner, inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda ks: c.SearchAnd(tuple(ks))),
    ),
    max_leaves=8,
)
parts = st.lists(st.integers(1, 1000), max_size=3).map(tuple)


@st.composite
def sections(draw):
    part = draw(parts)
    text = draw(
        st.sampled_from([None, "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT"] + (["MIME"] * bool(part)))
    )
    fields = draw(st.lists(texts, min_size=1, max_size=3).map(tuple)) if text and "FIELDS" in text else ()
    return c.Section(part, text, fields)


partials = st.none() | st.tuples(st.integers(0, 2**32 - 1), U32)
fetch_items = st.one_of(
    st.sampled_from(sorted(c.FETCH_ATTS)).map(c.FetchAtt),
    st.builds(c.FetchBody, sections(), partials, st.booleans()),
    st.builds(lambda p, r, k: c.FetchBody(c.Section(p), r, k, binary=True), parts, partials, st.booleans()),
    st.builds(c.FetchBinarySize, parts),
)


@st.composite
def fetches(draw):
    uid = draw(st.booleans())
    since = draw(st.none() | U63)
    vanished = uid and since is not None and draw(st.booleans())
    items = tuple(draw(st.lists(fetch_items, min_size=1, max_size=4)))
    return c.Fetch(draw(seqsets()), items, uid, since, vanished)


@st.composite
def lists(draw):
    selection = draw(st.lists(st.sampled_from(["SUBSCRIBED", "REMOTE", "SPECIAL-USE"]), max_size=2, unique=True))
    if set(selection) - {"REMOTE"} and draw(st.booleans()):  # RFC 5258 §3.1: never alone, nor only with REMOTE
        selection.append("RECURSIVEMATCH")
    returns = tuple(draw(st.lists(st.sampled_from(["SUBSCRIBED", "CHILDREN", "SPECIAL-USE"]), max_size=3)))
    status = draw(st.none() | st.lists(st.sampled_from(sorted(c.STATUS_ITEMS)), min_size=1, max_size=3).map(tuple))
    patterns = tuple(draw(st.lists(texts, min_size=1, max_size=3)))
    return c.List(draw(texts), patterns, tuple(selection), returns, status, draw(st.booleans()))


qresyncs = st.builds(
    c.QResync, U32, U63, st.none() | seqsets(star=False, saved=False),
    st.none() | st.tuples(seqsets(star=False, saved=False), seqsets(star=False, saved=False)),
)  # fmt: skip
bodies = st.one_of(
    st.builds(c.Capability), st.builds(c.Noop), st.builds(c.Logout), st.builds(c.StartTLS), st.builds(c.Check),
    st.builds(c.Close), st.builds(c.Unselect), st.builds(c.Expunge), st.builds(c.Idle), st.builds(c.Namespace),
    st.builds(c.Authenticate, atoms_upper, st.none() | st.binary(max_size=20)),
    st.builds(c.Login, texts, texts),
    st.builds(c.Select, mailboxes, st.booleans(), st.none() | qresyncs),
    st.builds(c.Examine, mailboxes, st.booleans(), st.none() | qresyncs),
    st.builds(c.Create, mailboxes, st.lists(st.sampled_from(["\\Sent", "\\Trash", "\\Junk"]), max_size=2).map(tuple)),
    st.builds(c.Delete, mailboxes), st.builds(c.Rename, mailboxes, mailboxes),
    st.builds(c.Subscribe, mailboxes), st.builds(c.Unsubscribe, mailboxes),
    lists(), st.builds(c.Lsub, texts, texts),
    st.builds(c.Status, mailboxes, st.lists(st.sampled_from(sorted(c.STATUS_ITEMS)), min_size=1).map(tuple)),
    st.builds(
        lambda m, msg, f, d, kind: c.Append(m, msg, f, d, kind > 0, kind > 1),
        mailboxes, st.binary(max_size=40), flags, st.none() | date_times, st.integers(0, 2),
    ),
    st.builds(c.UidExpunge, seqsets()),
    st.builds(c.Search, search_keys, st.sampled_from([None, "UTF-8"]), st.booleans(),
              st.none() | st.lists(st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE"]), max_size=3).map(tuple)),
    fetches(),
    st.builds(c.Store, seqsets(), st.sampled_from(["replace", "add", "remove"]), flags, st.booleans(), st.booleans(),
              st.none() | U63),
    st.builds(c.Copy, seqsets(), mailboxes, st.booleans()), st.builds(c.Move, seqsets(), mailboxes, st.booleans()),
    st.builds(c.Id, st.none() | st.lists(st.tuples(texts, st.none() | texts), max_size=3).map(tuple)),
    st.builds(c.Enable, st.lists(atoms_upper, min_size=1, max_size=3).map(tuple)),
    st.builds(c.GetQuota, texts), st.builds(c.GetQuotaRoot, mailboxes),
    st.builds(c.SetQuota, texts, st.lists(st.tuples(atoms_upper, U63), max_size=3).map(tuple)),
    st.builds(c.SetAcl, mailboxes, texts, st.from_regex(r"[a-z0-9]{0,6}", fullmatch=True),
              st.sampled_from(["replace", "add", "remove"])),
    st.builds(c.DeleteAcl, mailboxes, texts), st.builds(c.GetAcl, mailboxes),
    st.builds(c.ListRights, mailboxes, texts), st.builds(c.MyRights, mailboxes),
    # RFC 5256 SORT / THREAD, RFC 5267 ESORT, RFC 3502 MULTIAPPEND
    st.builds(c.Sort, st.lists(st.tuples(st.sampled_from(sorted(SORT_KEYS)), st.booleans()), min_size=1,
                               max_size=3).map(tuple),
              search_keys, st.just("UTF-8"), st.booleans(),
              st.none() | st.lists(st.sampled_from(["MIN", "MAX", "ALL", "COUNT", "SAVE"]), max_size=3).map(tuple)),
    st.builds(c.Thread, st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]), search_keys, st.just("UTF-8"),
              st.booleans()),
    st.builds(
        lambda m, msgs: c.MultiAppend(m, tuple(c.Append(m, *x) for x in msgs)), mailboxes,
        st.lists(st.tuples(st.binary(max_size=20), flags, st.none() | date_times), min_size=2, max_size=3),
    ),
)  # fmt: skip
commands = st.builds(Command, tags, bodies)

# ------------------------------------------------------------------ helpers


def run(data: bytes, cuts: list[int] | None = None, **limits) -> list:
    """Feed ``data`` cut at ``cuts``; return every event. Any exception fails the property."""
    parser = CommandParser(**limits)
    events: list = []
    bounds = sorted(set(cuts or [])) + [len(data)]
    start = 0
    for end in bounds:
        if end > start:
            parser.receive_data(data[start:end])
            events += parser.events()
            start = end
    parser.receive_data(b"")
    events += parser.events()
    return events


def wire_stream(cmds: list[Command], junk: list[bytes], plus: bool) -> bytes:
    pieces = [command_to_bytes(cmd, literal_plus=plus) for cmd in cmds]
    for i, j in enumerate(junk):
        pieces.insert(i * 2 % (len(pieces) + 1), j)
    return b"".join(pieces)


junk_lines = st.lists(
    st.sampled_from(
        [b"\r\n", b"x BOGUS\r\n", b"* 1 FETCH\r\n", b"y LOGIN {3+}\r\nabc\r\n", b"z FOO {9}\r\n", b"\xff\x00\r\n"]
    )
    | st.binary(max_size=30).map(lambda b: b + b"\r\n"),
    max_size=3,
)


# ------------------------------------------------------------------ properties


@pytest.mark.slow
@FAST
@given(st.lists(commands, max_size=4), junk_lines, st.booleans(), st.data())
def test_any_chunking_gives_the_same_events(cmds, junk, plus, data):
    stream = wire_stream(cmds, junk, plus)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    limits = data.draw(st.sampled_from([{}, {"max_line": 60, "max_literal": 16}]))
    assert run(stream, cuts, **limits) == run(stream, **limits)
    assert run(stream, list(range(len(stream))), **limits) == run(stream, **limits)


@FAST
@given(st.binary(max_size=400), st.lists(st.integers(0, 400), max_size=6), st.booleans())
def test_random_bytes_only_yield_our_events(blob, cuts, small):
    limits = {"max_line": 40, "max_literal": 8} if small else {}
    events = run(blob, cuts, **limits)
    assert all(isinstance(e, EVENT_TYPES) for e in events)
    assert isinstance(events[-1], ConnectionClosed)


@pytest.mark.slow
@FAST
@given(commands, st.randoms(use_true_random=False), st.integers(1, 6), st.booleans())
def test_mutated_commands_only_yield_our_events(cmd, rnd: random.Random, n_mutations, interactive):
    data = bytearray(command_to_bytes(cmd, literal_plus=rnd.random() < 0.5))
    for _ in range(n_mutations):
        op, pos = rnd.randrange(4), rnd.randrange(len(data) + 1)
        if op == 0 and pos < len(data):
            data[pos] = rnd.randrange(256)
        elif op == 1:
            data[pos:pos] = rnd.choice(
                [b"{", b"}", b"(", b")", b'"', b"\\", b" ", b"\r\n", b"{5}\r\n", b"~{2+}\r\n", b"*"]
            )
        elif op == 2:
            del data[pos : pos + rnd.randrange(1, 8)]
        else:
            data[pos:pos] = data[rnd.randrange(len(data) + 1) :][:20]
    parser = CommandParser(max_line=rnd.choice([30, 300, 65536]), max_literal=rnd.choice([4, 64, 1 << 20]))
    parser.utf8_names = rnd.random() < 0.3
    stream = bytes(data)
    pos = 0
    while True:
        if pos < len(stream):
            step = rnd.randrange(1, 16)
            parser.receive_data(stream[pos : pos + step])
            pos += step
        else:
            parser.receive_data(b"")
        while (event := parser.next_event()) is not NEED_DATA:
            assert isinstance(event, EVENT_TYPES)
            if interactive and isinstance(event, NeedContinuation) and rnd.random() < 0.3:
                parser.reject_literal()
            if interactive and isinstance(event, Command) and rnd.random() < 0.3:
                parser.expect_line()
            if isinstance(event, ConnectionClosed):
                return


@pytest.mark.slow
@FAST
@given(commands, st.booleans())
def test_parse_of_written_command_round_trips(cmd, plus):
    events = [e for e in run(command_to_bytes(cmd, literal_plus=plus)) if not isinstance(e, NeedContinuation)]
    assert events == [cmd, ConnectionClosed()]


utf8_names = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10).filter(
    lambda n: n.upper() != "INBOX"
)


@settings(max_examples=60, deadline=None)
@given(tags, utf8_names, utf8_names)
def test_utf8_mailbox_names_round_trip(tag, old, new):
    cmd = Command(tag, c.Rename(old, new))
    parser = CommandParser(utf8_names=True)
    parser.receive_data(command_to_bytes(cmd, literal_plus=True, utf8_names=True))
    assert parser.next_event() == cmd


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_mutf7_round_trips_any_text(name):
    wire = encode_mutf7(name)
    assert wire.isascii()
    assert decode_mutf7(wire) == name


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=30))
def test_mutf7_decode_only_raises_its_error(blob):
    try:
        name = decode_mutf7(blob)
    except ValueError:
        return
    assert encode_mutf7(name) == blob


def test_search_charsets_are_python_codecs():
    for codec in SEARCH_CHARSETS.values():
        "x".encode(codec)
