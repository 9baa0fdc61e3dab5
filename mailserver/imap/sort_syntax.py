"""Argument grammar of SORT and THREAD (RFC 5256 §5, RFC 5267 §4 ESORT, RFC 5957 §5), registered in command_syntax."""

from __future__ import annotations

from collections.abc import Callable

from . import commands as c
from .sorting import SORT_KEYS
from .syntax import SEARCH_CHARSETS, BadCharsetError, Cursor, SyntaxErr, search_key
from .threads import ALGORITHMS

SORT_RETURN = {"MIN", "MAX", "ALL", "COUNT", "SAVE"}  # RFC 5267 §3.2 (SAVE: RFC 5182 §2.4)


def return_options(cur: Cursor, allowed: set[str], command: str) -> tuple[str, ...] | None:
    """ "RETURN" SP "(" [option *(SP option)] ")" SP, or None when absent (RFC 4731 §3, RFC 5267 §4)."""
    if cur.peek_keyword() != "RETURN":
        return None
    cur.pos += 6
    cur.sp()
    returns = cur.plist(cur.keyword)
    if any(r not in allowed for r in returns):
        raise cur.fail(f"unknown {command} return option")
    cur.sp()
    return returns


def _search_criteria(cur: Cursor) -> tuple[str, c.SearchKey]:
    """RFC 5256 §5 search-criteria = charset 1*(SP search-key); the charset is not optional here."""
    charset = cur.astring().decode("ascii", "replace").upper()
    if charset not in SEARCH_CHARSETS:
        raise BadCharsetError("", charset)
    cur.charset = charset
    keys = []
    while cur.maybe(b" "):
        keys.append(search_key(cur))
    if not keys:
        raise cur.fail("expected search key")
    return charset, keys[0] if len(keys) == 1 else c.SearchAnd(tuple(keys))


def _sort_criterion(cur: Cursor) -> tuple[str, bool]:
    key = cur.keyword()
    reverse = key == "REVERSE"
    if reverse:
        cur.sp()
        key = cur.keyword()
    if key not in SORT_KEYS:
        raise cur.fail("unknown sort key")
    return key, reverse


def _sort(uid: bool) -> Callable[[Cursor], c.Sort]:
    def parse(cur: Cursor) -> c.Sort:  # RFC 5256 §5 sort, RFC 5267 §4 sort-return-opts
        cur.sp()
        returns = return_options(cur, SORT_RETURN, "SORT")
        keys = cur.plist(lambda: _sort_criterion(cur), min_items=1)
        cur.sp()
        charset, criteria = _search_criteria(cur)
        return c.Sort(keys, criteria, charset, uid, returns)

    return parse


def _thread(uid: bool) -> Callable[[Cursor], c.Thread]:
    def parse(cur: Cursor) -> c.Thread:  # RFC 5256 §5 thread
        cur.sp()
        algorithm = cur.keyword()
        if algorithm not in ALGORITHMS:
            raise SyntaxErr(f"unknown thread algorithm {algorithm[:40]}")
        cur.sp()
        charset, criteria = _search_criteria(cur)
        return c.Thread(algorithm, criteria, charset, uid)

    return parse


COMMANDS = {"SORT": _sort(False), "UID SORT": _sort(True), "THREAD": _thread(False), "UID THREAD": _thread(True)}
