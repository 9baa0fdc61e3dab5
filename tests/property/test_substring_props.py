"""SEARCH BODY/TEXT properties (RFC 3501 §6.4.4): a substring of any indexed text is found; nothing else is.

The queries are the store's own (substring.folder_queries), run on an in-memory SQLite
holding both indexes as the migrations build them; the oracle is Python's ``in`` on the
folded texts.
"""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailboxes import search, substring

ALPHABET = list("aAbBcCxyzXYZ 19-.,:@<>*?[]%_\\\"税收工作通知报送ßﬁ")
texts = st.text(alphabet=st.sampled_from(ALPHABET), max_size=80)
needles = st.text(alphabet=st.sampled_from(ALPHABET), min_size=1, max_size=6)


def _db(head: str, body: str) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE messages (uid INTEGER, folder_id INTEGER, blob_id INTEGER)")
    db.execute("INSERT INTO messages VALUES (7, 1, 1)")
    for stmt in search.index_ddl("sqlite") + substring.ddl("sqlite"):
        db.execute(stmt)
    db.executemany(search.insert_sql("sqlite"), search.row_params([(1, "", "", body)]))
    db.executemany(substring.insert_sql("sqlite"), substring.row_params([(1, head, body)]))
    return db


def _found(db: sqlite3.Connection, where: str, needle: str) -> bool:
    uids = set()
    for sql, params in substring.folder_queries("sqlite", where, needle):
        uids.update(r[0] for r in db.execute(sql, {"fid": 1, **params}))
    assert uids <= {7}
    return uids == {7}


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(texts, texts, st.data())
def test_every_substring_of_header_or_body_is_found(head, body, data):
    where = data.draw(st.sampled_from(["text", "body"]))
    source = body if where == "body" or not head else data.draw(st.sampled_from([head, body]))
    if not source.strip():
        return
    i = data.draw(st.integers(0, len(source) - 1))
    j = data.draw(st.integers(i + 1, len(source)))
    needle = source[i:j]
    assert _found(_db(head, body), where, needle.upper() if data.draw(st.booleans()) else needle)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(texts, texts, needles, st.sampled_from(["text", "body"]))
def test_found_exactly_when_a_substring(head, body, needle, where):
    fold = substring.fold
    expected = fold(needle) in fold(body) or (where == "text" and fold(needle) in fold(head))
    assert _found(_db(head, body), where, needle) == expected


def test_short_latin_needles_are_substrings_too():
    db = _db("Subject: Hello", "asdfghjkl")
    assert _found(db, "body", "jk") and _found(db, "body", "J") and not _found(db, "body", "lo")
    assert _found(db, "text", "lo") and not _found(db, "text", "q")


def test_long_body_is_cut_but_words_past_the_cut_are_found():
    body = "x" * substring.BODY_CHARS + " wxyzzyxw tail"
    db = _db("", body)
    assert _found(db, "body", "wxyzz")  # a word's start, through the word index
    assert not _found(db, "body", "yzzyx")  # mid-word past the cut: the documented limit
