"""The linear-time LIST wildcard matcher agrees with a brute-force reference and never backtracks (RFC 3501 §6.3.8)."""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailserver.imap.names import list_pattern
from mailserver.imap.wildcard import compile_pattern


def reference(pattern: str, name: str, delim: str = "/") -> bool:
    """Straight from the definition: try every split for each wildcard (exponential without the cache)."""

    @lru_cache(maxsize=None)
    def m(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(name)
        p = pattern[i]
        if p == "*":
            return any(m(i + 1, k) for k in range(j, len(name) + 1))
        if p == "%":
            k = j
            while True:
                if m(i + 1, k):
                    return True
                if k == len(name) or name[k] == delim:
                    return False
                k += 1
        return j < len(name) and name[j] == p and m(i + 1, j + 1)

    return m(0, 0)


ALPHABET = "ab/*%"
names = st.text(alphabet="ab/", max_size=12)
patterns = st.text(alphabet=ALPHABET, max_size=10)


@settings(max_examples=500, deadline=None)
@given(patterns, names)
def test_matcher_agrees_with_the_reference(pattern, name):
    assert compile_pattern(pattern).fullmatch(name) == reference(pattern, name)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "*", "%", "/", "ab", "*a", "%/"]), max_size=8), names)
def test_matcher_agrees_on_structured_patterns(parts, name):
    pattern = "".join(parts)
    assert compile_pattern(pattern).fullmatch(name) == reference(pattern, name)


def test_examples_from_rfc_3501():
    assert list_pattern("", "*").fullmatch("Work/2026/Q1")
    assert list_pattern("", "%").fullmatch("Work") and not list_pattern("", "%").fullmatch("Work/2026")
    assert list_pattern("Work/", "%").fullmatch("Work/2026")
    assert list_pattern("", "inbox").fullmatch("INBOX")  # RFC 3501 §5.1: INBOX is case-insensitive
    assert list_pattern("", "Work/%/Q1").fullmatch("Work/2026/Q1")
    assert not list_pattern("", "Work/%/Q1").fullmatch("Work/2026/x/Q1")


@pytest.mark.timeout(60)  # liveness only: microseconds when linear (benchmarks/latency_bench.py, hostile)
def test_pathological_patterns_are_answered():
    """``*a*a*a*a*b`` against 200 a's froze the server 2.2 s with a regex; six groups never ended."""
    name = "a" * 200
    for groups in (4, 5, 6, 40, 2000):
        pat = compile_pattern("*a" * groups + "*b")
        assert not pat.fullmatch(name)
        assert not compile_pattern("%a" * groups + "%b").fullmatch(name)
