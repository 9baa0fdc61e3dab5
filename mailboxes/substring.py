"""Substring index for SEARCH TEXT/BODY (RFC 3501 §6.4.4): trigrams of the folded header and body text.

RFC 3501 §6.4.4 asks for substrings ("contains the specified string"), so the word
index of search.py alone cannot answer "sdfghjk" in "asdfghjkl". Each blob gets a
row of two texts, folded as the IMAP layer folds (NFKC + casefold):

- ``head``: every field of the top-level header, "name: decoded value" per line;
- ``body``: the body's text extract (search.py indexes the same text as words).

Both are cut at ``HEAD_CHARS`` / ``BODY_CHARS``. SQLite keeps them in an FTS5 table
with the ``trigram`` tokenizer (SQLite >= 3.34; detail=none, queried with GLOB);
PostgreSQL in a plain table with pg_trgm GIN indexes (queried with LIKE). For a needle
of three or more characters the trigram index picks the candidates and the database
checks their text: an exact substring match without a scan. A shorter needle cannot use trigrams:
it is checked with instr/strpos against the stored texts of the folder's messages
only (a scan in the database, bounded by the folder size times the caps; it never
runs on the event loop). A needle that is one word or one run of Chinese characters
is also looked up in the word index, which reaches past the cut (words by prefix,
Chinese as bigrams) up to search.MAX_INDEXED_CHARS.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

from . import search

HEAD_CHARS = 16 << 10  # folded header text kept per message
BODY_CHARS = 64 << 10  # folded body text kept per message; beyond it, the word index answers
TRIGRAM = 3  # shortest needle the trigram index can answer

TABLE = "blob_text"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # PostgreSQL text holds no NUL; UTF-8 no lone surrogates


def fold(text_: str) -> str:
    """NFKC + casefold: the one case- and width-insensitive form both the index and needles take."""
    return unicodedata.normalize("NFKC", text_).casefold()


def prepare(text_: str, limit: int) -> str:
    """The stored form of a text: folded, cut at ``limit`` characters, no lone surrogates."""
    folded = fold(text_[: limit * 2])[:limit]
    # Raw 8-bit header bytes that no charset decoded survive as surrogates; NUL is a stray octet.
    return _UNSTORABLE.sub("\ufffd", folded) if _UNSTORABLE.search(folded) else folded


def ddl(dialect: str) -> list[str]:
    """Statements creating the substring index (run by migration mai0004)."""
    if dialect == "sqlite":
        # We fold before storing and before querying: case_sensitive 1 keeps FTS5 from folding again.
        # detail=none keeps no positions: 6.6 instead of 18.1 KiB per 4.4 KiB message on real
        # English (benchmarks/search_index_bench.py); GLOB then checks the candidates' text.
        return [f"CREATE VIRTUAL TABLE IF NOT EXISTS {TABLE} USING fts5("
                "head, body, tokenize = 'trigram case_sensitive 1', detail = none)"]
    return ["CREATE EXTENSION IF NOT EXISTS pg_trgm",
            f"CREATE TABLE IF NOT EXISTS {TABLE} ("
            " blob_id BIGINT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,"
            " head TEXT NOT NULL, body TEXT NOT NULL)",
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_head ON {TABLE} USING gin (head gin_trgm_ops)",
            f"CREATE INDEX IF NOT EXISTS ix_{TABLE}_body ON {TABLE} USING gin (body gin_trgm_ops)"]


def drop_ddl(dialect: str) -> list[str]:
    return [f"DROP TABLE IF EXISTS {TABLE}"]  # pg_trgm stays: other databases' objects may use it


def insert_sql(dialect: str) -> str:
    """INSERT of one (:id, :h, :b) row, parameters already prepared."""
    if dialect == "sqlite":
        return f"INSERT INTO {TABLE}(rowid, head, body) VALUES (:id, :h, :b)"
    return f"INSERT INTO {TABLE}(blob_id, head, body) VALUES (:id, :h, :b) ON CONFLICT (blob_id) DO NOTHING"


def delete_sql(dialect: str) -> str:
    """DELETE of the rows of the blob ids in the expanding parameter :ids."""
    return f"DELETE FROM {TABLE} WHERE {'rowid' if dialect == 'sqlite' else 'blob_id'} IN :ids"


def row_params(rows: list[tuple[int, str, str]]) -> list[dict]:
    return [{"id": bid, "h": prepare(h, HEAD_CHARS), "b": prepare(b, BODY_CHARS)} for bid, h, b in rows]


@functools.cache
def _insert_text(dialect: str) -> TextClause:
    return text(insert_sql(dialect))


def index_blobs(conn: Connection, rows: list[tuple[int, str, str]]) -> None:
    """Index (blob_id, header text, body text) rows; the text is raw and prepared here."""
    if rows:
        insert_params(conn, row_params(rows))


def insert_params(conn: Connection, params: list[dict]) -> None:
    """Write index rows made earlier by `row_params` (perhaps in another transaction)."""
    if params:
        conn.execute(_insert_text(conn.dialect.name), params)


def _columns(where: str) -> tuple[str, ...]:
    return ("body",) if where == "body" else ("head", "body")


def _glob(needle: str) -> str:
    return "*" + needle + "*"  # needles with GLOB specials do not get here


def _like(needle: str) -> str:
    return "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def folder_match_sql(dialect: str, cols: tuple[str, ...], needle: str) -> tuple[str, dict]:
    """SQL selecting the UIDs of folder :fid whose stored text in ``cols`` (head, body) contains ``needle``.

    ``needle`` is already folded. Three characters or more use the trigram index; fewer
    (and on SQLite, any with a GLOB special * ? [) check the stored text of the folder's
    messages only.
    """
    key = "rowid" if dialect == "sqlite" else "blob_id"
    # SQLite's CROSS JOIN keeps the folder's rows the outer loop whatever the statistics say (search.folder_blob).
    join = "CROSS JOIN" if dialect == "sqlite" else "JOIN"
    base = f"SELECT m.uid FROM messages m {join} {TABLE} x ON x.{key} = m.blob_id WHERE m.folder_id = :fid AND "
    # GLOB's own specials: SQLite 3.40's FTS5 misses "[*]" before a multibyte character; scan instead.
    if len(needle) < TRIGRAM or (dialect == "sqlite" and any(ch in needle for ch in "*?[")):
        fn = "instr({c}, :n) > 0" if dialect == "sqlite" else "strpos({c}, :n) > 0"
        return base + "(" + " OR ".join(fn.format(c=f"x.{c}") for c in cols) + ")", {"n": needle}
    if dialect == "sqlite":  # FTS5 answers "col GLOB" from the trigrams, one column per statement
        inner = " UNION ".join(f"SELECT rowid FROM {TABLE} WHERE {c} GLOB :g" for c in cols)
        return (f"SELECT uid FROM messages WHERE folder_id = :fid AND {search.folder_blob(dialect)} IN ({inner})",
                {"g": _glob(needle)})
    return base + "(" + " OR ".join(f"x.{c} LIKE :p" for c in cols) + ")", {"p": _like(needle)}


def folder_queries(dialect: str, where: str, needle: str) -> list[tuple[str, dict]]:
    """The queries whose UIDs (of folder :fid) together answer SEARCH BODY/TEXT ``needle``: their union.

    The substring index, and, for a needle of one word or one Chinese run, the word index
    (it reaches past the cut; a word's start or a run's bigrams are substrings too).
    """
    folded = fold(needle)
    if not folded:
        return []
    cols = _columns(where)
    out = []
    if search.is_one_token(folded):
        words = search.folder_uids_sql(dialect, None if where == "text" else "body", needle)
        if words is not None:
            out.append(words)
            if len(folded) < TRIGRAM and search.is_cjk(folded):
                # One or two Chinese characters: the word index holds every one and every pair of
                # the body and of subject and addresses; only the other header fields need a look.
                cols = tuple(c for c in cols if c != "body")
    if cols:
        out.append(folder_match_sql(dialect, cols, folded))
    return out
