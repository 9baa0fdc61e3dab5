"""The pure selected-mailbox view: sequence numbers, EXPUNGE ordering, deferred expunges, own changes, \\Recent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailboxes.model import Changes, FixedFacts, MessageMeta
from mailserver.imap.commands import SequenceSet
from mailserver.imap.selected import GONE, BadSequence, SelectedMailbox

WHEN = datetime(2026, 11, 2, tzinfo=UTC)


def meta(uid: int, modseq: int = 1, flags: int = 0, keywords: frozenset[str] = frozenset()) -> MessageMeta:
    return MessageMeta(uid, modseq, flags, keywords, WHEN, 100, uid)


def view(uids, modseq: int = 10) -> SelectedMailbox:
    return SelectedMailbox([meta(u) for u in uids], modseq=modseq, uidvalidity=7, uidnext=max(uids, default=0) + 1,
                           read_only=False)


def test_resolve_sequence_and_uid_sets():
    v = view([3, 5, 9, 20])
    assert v.resolve(SequenceSet.parse("2:*"), uid=False) == [1, 2, 3]
    assert v.resolve(SequenceSet.parse("4:2"), uid=False) == [1, 2, 3]  # written high to low
    assert v.resolve(SequenceSet.parse("4:10"), uid=True) == [1, 2]  # UIDs not in use are skipped
    assert v.resolve(SequenceSet.parse("21:*"), uid=True) == [3]  # RFC 3501 §6.4.8: "*" is the last UID
    assert v.resolve(SequenceSet(saved=True), uid=False, saved=[20, 3, 4]) == [0, 3]  # "$" (RFC 5182)
    with pytest.raises(BadSequence):
        v.resolve(SequenceSet.parse("5"), uid=False)
    assert view([]).resolve(SequenceSet.parse("1:*"), uid=False) == []


def test_own_expunge_numbers_each_removal_in_turn():
    v = view([1, 2, 3, 4, 5, 6])
    assert v.expunge([2, 3, 6], vanished=False) == [b"* 2 EXPUNGE\r\n", b"* 2 EXPUNGE\r\n", b"* 4 EXPUNGE\r\n"]
    assert v.uids == [1, 4, 5]
    assert view([1, 2, 3, 4]).expunge([2, 3], vanished=True) == [b"* VANISHED 2:3\r\n"]  # RFC 7162 §3.2.10


def test_expunge_elsewhere_waits_until_allowed():
    v = view([1, 2, 3])
    lines = v.apply(Changes(11, [], [2]), allow_expunge=False, condstore=False, qresync=False)
    assert lines == [] and v.exists == 3 and v.ghosts == {2}  # RFC 3501 §7.4.1: not during FETCH etc.
    new = meta(4, 12)
    lines = v.apply(Changes(12, [new], []), allow_expunge=False, condstore=False, qresync=False,
                    claim_recent=lambda uids: set(uids))
    assert lines == [b"* 4 EXISTS\r\n", b"* 1 RECENT\r\n"]  # the ghost still counts
    lines = v.apply(Changes(12), allow_expunge=True, condstore=False, qresync=False)
    assert lines == [b"* 2 EXPUNGE\r\n"] and v.uids == [1, 3, 4]


def test_flag_changes_once_and_new_keywords_announced():
    v = view([1, 2])
    changed = meta(2, 11, flags=4, keywords=frozenset({"$Work"}))
    lines = v.apply(Changes(11, [changed], []), allow_expunge=True, condstore=True, qresync=False)
    assert lines == [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)\r\n",
                     b"* 2 FETCH (UID 2 FLAGS (\\Flagged $Work) MODSEQ (11))\r\n"]
    assert v.apply(Changes(11, [changed], []), allow_expunge=True, condstore=True, qresync=False) == []


def test_own_change_advances_modseq_only_when_nothing_came_between():
    v = view([1, 2], modseq=10)
    v.update([meta(1, 11, flags=1)])
    assert v.modseq == 11  # our write was the only one: no need to read it back
    v.update([meta(2, 13, flags=1)])
    assert v.modseq == 11  # something else got 12: the next sync must ask the store


@given(st.lists(st.integers(1, 60), unique=True, min_size=1), st.data())
def test_expunge_lines_replayed_on_the_client_give_the_same_list(uids, data):
    uids = sorted(uids)
    gone = data.draw(st.lists(st.sampled_from(uids), unique=True))
    v = view(uids)
    client = list(uids)  # what a client does with the EXPUNGE lines
    for line in v.expunge(gone, vanished=False):
        del client[int(line.split()[1]) - 1]
    assert client == v.uids == [u for u in uids if u not in gone]


def state_view(uids, flags, kws=None, modseq: int = 10) -> SelectedMailbox:
    """A view as SELECT builds it: columns only, no facts read yet."""
    return SelectedMailbox(modseq=modseq, uidvalidity=7, uidnext=max(uids, default=0) + 1, read_only=False,
                           state=(list(uids), [1] * len(uids), bytes(flags), dict(kws or {})))


def test_a_view_from_columns_answers_flags_and_first_unseen_without_facts():
    v = state_view([3, 5, 9], [1, 1, 4], {5: frozenset({"$Work"})})
    assert v.first_unseen() == 3 and state_view([1, 2], [1, 3]).first_unseen() is None
    assert v.flags_of(1) == b"(\\Seen $Work)" and v.flags_of(2) == b"(\\Flagged)"
    assert v.keywords == {"$Work"}
    assert v.without_facts([0, 2]) == [3, 9]
    assert v.fact(0) == GONE  # not read: an empty message until it is (RFC 2180 §4.1.3 for the expunged)


def test_facts_are_shared_and_follow_the_numbering_after_an_expunge():
    shared: dict = {}
    v = SelectedMailbox(modseq=10, uidvalidity=7, uidnext=10, read_only=False, facts=shared,
                        state=([3, 5, 9], [1, 1, 1], bytes(3), {}))
    v.add_facts({u: FixedFacts(WHEN, u * 10, u) for u in (3, 4, 5, 9)})  # 4: a neighbour of a range read
    assert v.without_facts(range(3)) == [] and shared[4] == FixedFacts(WHEN, 40, 4)
    assert v.fact(1) == FixedFacts(WHEN, 50, 5)
    v.expunge([5], vanished=False)
    assert v.fact(1) == FixedFacts(WHEN, 90, 9)
    assert 5 in shared  # another view may still show it as a ghost: FolderSnapshots drops it


def test_changes_from_elsewhere_update_the_columns_and_bring_new_mail_with_its_facts():
    v = state_view([1, 2], [0, 0])
    own = meta(1, 11, flags=1)
    assert v.update([own]) == [0] and v.modseq == 11 and v.flags[0] == 1 and v.modseqs[0] == 11
    lines = v.apply(Changes(13, [own, meta(2, 12, flags=8, keywords=frozenset({"A"})), meta(3, 13)], []),
                    allow_expunge=True, condstore=False, qresync=False)
    assert lines == [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft A)\r\n",
                     b"* 2 FETCH (UID 2 FLAGS (\\Deleted A))\r\n", b"* 3 EXISTS\r\n"]
    assert v.uids == [1, 2, 3] and v.modseqs == [11, 12, 13] and list(v.flags) == [1, 8, 0]
    assert v.fact(2) == FixedFacts(WHEN, 100, 3) and v.without_facts(range(3)) == []  # changed rows carry them
