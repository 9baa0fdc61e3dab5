"""CJK-aware full-text index: English words plus Chinese character bigrams, on SQLite FTS5 and PostgreSQL.

A Chinese sentence has no spaces between words, so a word tokenizer would
index a whole sentence as one token and find nothing. We index every run of
CJK characters as its overlapping bigrams; a query of n >= 2 Chinese
characters becomes the phrase of its n-1 bigrams, which finds any substring
of two or more characters; the single characters are indexed as well, so a
one-character query finds them too. Other text is lowercased words. Both dialects get
the same prepared term strings, so the semantics match exactly.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Connection

MAX_INDEXED_CHARS = 1_000_000  # per message; a longer extract is cut

# CJK Unified Ideographs (+Ext A, compatibility), kana, hangul syllables.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_{_CJK}]+", re.UNICODE)
_IS_CJK = re.compile(rf"[{_CJK}]")

COLUMNS = ("subject", "addrs", "body")


# ASCII words are the runs of [a-z0-9] (what `[^\W_]+` finds in ASCII): every other ASCII character
# becomes a space and str.split() cuts there, about 5x faster than the regex on a 4 KiB body.
_ASCII_SEPARATORS = str.maketrans({chr(i): " " for i in range(128) if not chr(i).isalnum()})


def _terms(text_: str, unigrams: list[str] | None = None) -> list[str]:
    """Terms in order; with `unigrams`, also collect the single characters of longer CJK runs."""
    text_ = text_[:MAX_INDEXED_CHARS]
    if text_.isascii():  # fast path: ASCII is NFKC already and has no CJK runs
        return text_.lower().translate(_ASCII_SEPARATORS).split()
    text_ = unicodedata.normalize("NFKC", text_).lower()
    out: list[str] = []
    for m in _TOKEN.finditer(text_):
        tok = m.group()
        if _IS_CJK.match(tok):
            if len(tok) == 1:
                out.append(tok)
            else:
                out.extend(tok[i : i + 2] for i in range(len(tok) - 1))
                if unigrams is not None:
                    unigrams.extend(tok)
        else:
            out.append(tok)
    return out


def index_text(text_: str) -> str:
    """The string stored in the index for a field: space-separated terms.

    Single Chinese characters of longer runs are indexed too (a search for one
    character, such as the surname 王, must find 王芳). They go after all the
    bigrams, so phrase adjacency between bigrams is kept; a bigram never equals
    a single character, so no phrase can match across the seam.
    """
    singles: list[str] = []
    terms = _terms(text_, singles)
    if singles:
        terms.extend(dict.fromkeys(singles))
    return " ".join(terms)


def is_one_token(text_: str) -> bool:
    """One word or one CJK run: the word index then matches only where the text is a substring."""
    return _TOKEN.fullmatch(unicodedata.normalize("NFKC", text_).lower()) is not None


def is_cjk(text_: str) -> bool:
    """Every character is CJK (indexed as unigrams and bigrams)."""
    return bool(text_) and all(_IS_CJK.match(ch) for ch in text_)


def query_terms(query: str) -> list[str]:
    return _terms(query)


def _fts5_phrase(terms: list[str], prefix_last: bool) -> str:
    # FTS5 phrase: strings joined by "+" must be adjacent; "*" makes the last a prefix.
    quoted = " + ".join('"' + t.replace('"', '""') + '"' for t in terms)
    if prefix_last and terms and not _IS_CJK.match(terms[-1]):
        quoted += " *"
    return quoted


def fts5_match(column: str | None, query: str) -> str | None:
    """An FTS5 MATCH expression for `query` in `column` (None: any column); None if no terms."""
    terms = query_terms(query)
    if not terms:
        return None
    phrase = _fts5_phrase(terms, prefix_last=True)
    return f"{column} : ({phrase})" if column else f"({phrase})"


def tsquery_text(query: str) -> str | None:
    """A to_tsquery('simple', ...) argument: the terms as a phrase, last English term as prefix."""
    terms = query_terms(query)
    if not terms:
        return None
    parts = []
    for i, t in enumerate(terms):
        esc = "'" + t.replace("'", "''").replace("\\", "\\\\") + "'"
        if i == len(terms) - 1 and not _IS_CJK.match(t):
            esc += ":*"
        parts.append(esc)
    return " <-> ".join(parts)


def index_ddl(dialect: str) -> list[str]:
    """DDL of the full-text index for a dialect (run by the mail schema's first migration)."""
    if dialect == "sqlite":
        return ["CREATE VIRTUAL TABLE IF NOT EXISTS blob_fts USING fts5("
                "subject, addrs, body, tokenize = 'unicode61 remove_diacritics 0')"]
    out = ["CREATE TABLE IF NOT EXISTS blob_search ("
           " blob_id BIGINT PRIMARY KEY REFERENCES blobs(id) ON DELETE CASCADE,"
           " subject tsvector NOT NULL, addrs tsvector NOT NULL, body tsvector NOT NULL)"]
    out += [f"CREATE INDEX IF NOT EXISTS ix_blob_search_{col} ON blob_search USING gin ({col})" for col in COLUMNS]
    return out


def insert_sql(dialect: str) -> str:
    """INSERT of one word-index row from :id, :s, :a, :b (prepared by `row_params`)."""
    if dialect == "sqlite":
        return "INSERT INTO blob_fts(rowid, subject, addrs, body) VALUES (:id, :s, :a, :b)"
    return ("INSERT INTO blob_search(blob_id, subject, addrs, body) VALUES (:id,"
            " to_tsvector('simple', :s), to_tsvector('simple', :a), to_tsvector('simple', :b))"
            " ON CONFLICT (blob_id) DO NOTHING")


def delete_sql(dialect: str) -> str:
    """DELETE of the word-index rows of the blob ids in the expanding parameter :ids."""
    return "DELETE FROM blob_fts WHERE rowid IN :ids" if dialect == "sqlite" else \
        "DELETE FROM blob_search WHERE blob_id IN :ids"


def row_params(rows: list[tuple[int, str, str, str]]) -> list[dict]:
    return [{"id": bid, "s": index_text(s), "a": index_text(a), "b": index_text(b)} for bid, s, a, b in rows]


@functools.cache
def _insert_text(dialect: str) -> TextClause:
    return text(insert_sql(dialect))


def index_blobs(conn: Connection, rows: list[tuple[int, str, str, str]]) -> None:
    """Index (blob_id, subject, addrs, body) rows; text is raw and prepared here."""
    if rows:
        insert_params(conn, row_params(rows))


def insert_params(conn: Connection, params: list[dict]) -> None:
    """Write index rows made earlier by `row_params` (perhaps in another transaction)."""
    if params:
        conn.execute(_insert_text(conn.dialect.name), params)


def folder_blob(dialect: str, qualifier: str = "") -> str:
    """messages.blob_id as a folder's search compares it with the bodies an index matched.

    On SQLite "+blob_id": the unary plus keeps ix_messages_blob_id out of the plan, so the folder's
    rows are walked (its index on folder_id) and each body looked up in the matched set. Without
    it, statistics that make folders look large and bodies unique (an ANALYZE on a big shared
    database) turned the plan around: every body of the partition that matched probed messages,
    so a common word cost a probe per matching message of the whole database, not per message of
    the folder. PostgreSQL plans with its own statistics, kept by autovacuum.
    """
    col = f"{qualifier}blob_id"
    return f"+{col}" if dialect == "sqlite" else col


def folder_uids_sql(dialect: str, column: str | None, query: str) -> tuple[str, dict] | None:
    """SQL selecting the UIDs of folder :fid whose indexed `column` (None: any) matches `query`, or None."""
    q = blob_match_sql(dialect, column, query)
    if q is None:
        return None
    sql, params = q
    return f"SELECT uid FROM messages WHERE folder_id = :fid AND {folder_blob(dialect)} IN ({sql})", params


def blob_match_sql(dialect: str, column: str | None, query: str) -> tuple[str, dict] | None:
    """SQL selecting blob ids whose `column` (None: any of them) matches `query`, with its params.

    Returns None when the query has no indexable terms (the caller then
    treats the key as matching everything, e.g. a search for punctuation).
    """
    if dialect == "sqlite":
        expr = fts5_match(column, query)
        if expr is None:
            return None
        return "SELECT rowid FROM blob_fts WHERE blob_fts MATCH :q", {"q": expr}
    tsq = tsquery_text(query)
    if tsq is None:
        return None
    cols = [column] if column else list(COLUMNS)
    cond = " OR ".join(f"{c} @@ to_tsquery('simple', :q)" for c in cols)
    return f"SELECT blob_id FROM blob_search WHERE {cond}", {"q": tsq}
