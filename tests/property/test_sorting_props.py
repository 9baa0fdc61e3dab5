"""Properties of the RFC 5256 §2.1 base subject and of THREAD output, over generated subjects and reference graphs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.imap.sorting import MessageFacts, SortRecord, base_subject
from mailserver.imap.threads import ordered_subject, references, thread_lists

# subjects built from the pieces the grammar cares about, so the interesting paths are hit often
pieces = st.sampled_from(["Re:", "re ", "Fwd:", "FW[2]:", "[fwd:", "]", "[", "[list]", "(fwd)", " ", "\t", "x",
                          "Subject", "äü", "主题", ":", "re", "fw"])
subjects = st.lists(pieces, max_size=12).map("".join) | st.text(max_size=40)


@given(subjects)
@settings(max_examples=400, deadline=None)
def test_base_subject_is_a_fixed_point(subject):
    base, _ = base_subject(subject)
    assert base == base.strip(" ")  # no subj-leader / subj-trailer WSP left
    assert base_subject(base) == (base, False)  # extraction removes everything removable at once


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


@st.composite
def folders(draw):
    n = draw(st.integers(0, 25))
    out = []
    for i in range(1, n + 1):
        refs = draw(st.lists(st.integers(1, n + 3), max_size=4))  # ids past n are missing messages (dummies)
        msgid = draw(st.sampled_from([f"<{i}@t>", f"<{i}@t>", "", f"<{draw(st.integers(1, n + 1))}@t>"]))
        facts = MessageFacts(subject=draw(subjects), sent=T0 + timedelta(hours=draw(st.integers(0, 5))),
                             message_id=msgid, references=" ".join(f"<{r}@t>" for r in refs))
        out.append(SortRecord(i, T0.timestamp(), 10, facts))
    return out


@pytest.mark.slow
@given(folders())
@settings(max_examples=300, deadline=None)
def test_every_message_is_threaded_exactly_once(records):
    for algorithm in (references, ordered_subject):
        out = thread_lists(algorithm(records), lambda r: r.seq)
        numbers = out.replace(b"(", b" ").replace(b")", b" ").split()
        assert sorted(int(x) for x in numbers) == [r.seq for r in records]
        depth = 0
        for ch in out:  # balanced parentheses, every top-level list non-empty
            depth += {40: 1, 41: -1}.get(ch, 0)
            assert depth >= 0
        assert depth == 0 and b"()" not in out
