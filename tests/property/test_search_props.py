"""Search tokenizer properties: any substring of Chinese characters (one or more) of an indexed text is found."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailboxes import search

hanzi = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x4FFF), min_size=2, max_size=40)
mixed = st.text(alphabet=st.sampled_from(list("税收工作通知报送abc XYZ,.。、123")), max_size=60)


@pytest.mark.slow
@settings(max_examples=200, deadline=None)
@given(hanzi, st.data())
def test_every_chinese_substring_is_found_even_one_character(text, data):
    i = data.draw(st.integers(0, len(text) - 1))
    j = data.draw(st.integers(i + 1, len(text)))
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE blob_fts USING fts5(subject, addrs, body)")
    db.execute("INSERT INTO blob_fts(rowid, subject, addrs, body) VALUES (1, '', '', ?)", (search.index_text(text),))
    expr = search.fts5_match("body", text[i:j])
    assert db.execute("SELECT rowid FROM blob_fts WHERE blob_fts MATCH ?", (expr,)).fetchall() == [(1,)]


@settings(max_examples=200, deadline=None)
@given(mixed, mixed)
def test_match_expressions_are_always_valid_fts5(text, query):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE blob_fts USING fts5(subject, addrs, body)")
    db.execute("INSERT INTO blob_fts(rowid, subject, addrs, body) VALUES (1, '', '', ?)", (search.index_text(text),))
    expr = search.fts5_match(None, query)
    if expr is not None:
        db.execute("SELECT rowid FROM blob_fts WHERE blob_fts MATCH ?", (expr,)).fetchall()
        assert search.tsquery_text(query) is not None


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_text_is_cut_into_the_words_the_unicode_tokenizer_finds(text):
    """The ASCII fast path (translate + split) gives exactly the words of the general tokenizer's `[^\\W_]+`."""
    import re

    assert search._terms(text) == re.findall(r"[^\W_]+", text.lower())
