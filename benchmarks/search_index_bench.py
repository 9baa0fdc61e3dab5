"""Search index size on real English text: KiB per message of the word index and of the substring (trigram) index.

Usage: .venv/bin/python benchmarks/search_index_bench.py [--messages 5000] [--body-kib 4]

Bodies are cut from Debian's changelogs (/usr/share/doc/*/changelog*.gz: real English
with names, versions and addresses); each message is run through ingest.prepare, as
delivery does, and both indexes are written into one SQLite file as the migrations
build them; sizes come from SQLite's dbstat. Cuts of the substring index's body text
(substring.BODY_CHARS) are compared by rebuilding with smaller caps.
"""

from __future__ import annotations

import argparse
import gzip
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailboxes import search, substring  # noqa: E402
from mailboxes.ingest import prepare  # noqa: E402


def english_text(limit: int) -> str:
    out, size = [], 0
    for p in sorted(Path("/usr/share/doc").glob("*/changelog*.gz")):
        try:
            t = gzip.decompress(p.read_bytes()).decode("utf-8", "replace")
        except OSError:
            continue
        out.append(t)
        size += len(t)
        if size > limit:
            break
    return "".join(out)


def messages(n: int, body_kib: int) -> list:
    corpus = english_text(n * body_kib * 1024 + 1)
    rng = random.Random(1)
    out = []
    for i in range(n):
        size = max(200, int(rng.expovariate(1 / (body_kib * 1024))))  # most mail is short, a few long
        start = rng.randrange(max(1, len(corpus) - size))
        body = corpus[start:start + size]
        raw = (f"From: Sender {i % 97} <sender{i % 97}@city.test>\r\nTo: staff@city.test\r\n"
               f"Subject: {body[:40].splitlines()[0] if body.strip() else 'x'}\r\n"
               f"Date: Mon, 02 Nov 2026 10:00:00 +0800\r\nMessage-ID: <{i}.{rng.random()}@city.test>\r\n"
               "X-Mailer: Foxmail 7.2\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n" + body.replace("\n", "\r\n")).encode()
        out.append(prepare(raw))
    return out


def build(path: Path, prepared: list, body_chars: int) -> dict[str, float]:
    substring.BODY_CHARS = body_chars
    db = sqlite3.connect(path)
    for stmt in search.index_ddl("sqlite") + substring.ddl("sqlite"):
        db.execute(stmt)
    t0 = time.perf_counter()
    db.executemany(search.insert_sql("sqlite"),
                   search.row_params([(i, p.subject, p.addrs, p.body_text) for i, p in enumerate(prepared, 1)]))
    t1 = time.perf_counter()
    db.executemany(substring.insert_sql("sqlite"),
                   substring.row_params([(i, p.head_text, p.body_text) for i, p in enumerate(prepared, 1)]))
    t2 = time.perf_counter()
    db.commit()
    db.execute("INSERT INTO blob_fts(blob_fts) VALUES ('optimize')")
    db.execute("INSERT INTO blob_text(blob_text) VALUES ('optimize')")
    db.commit()
    sizes = dict(db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall())
    n = len(prepared)
    kib = lambda name: sum(v for k, v in sizes.items() if k.startswith(name)) / 1024 / n  # noqa: E731
    # a mid-word needle, as SEARCH BODY would send it
    t3 = time.perf_counter()
    sql, params = substring.folder_match_sql("sqlite", ("body",), "ackag")
    db.execute("CREATE TABLE messages (uid INTEGER, folder_id INTEGER, blob_id INTEGER)")
    db.executemany("INSERT INTO messages VALUES (?, 1, ?)", [(i, i) for i in range(1, n + 1)])
    t3 = time.perf_counter()
    hits = len(db.execute(sql, {"fid": 1, **params}).fetchall())
    t4 = time.perf_counter()
    db.close()
    return {"word_kib": kib("blob_fts"), "trgm_kib": kib("blob_text"), "word_s": t1 - t0, "trgm_s": t2 - t1,
            "midword_ms": (t4 - t3) * 1000, "midword_hits": hits}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--body-kib", type=int, default=4, help="mean body size (exponential)")
    args = ap.parse_args()
    prepared = messages(args.messages, args.body_kib)
    text_kib = sum(len(p.body_text) + len(p.head_text) for p in prepared) / 1024 / len(prepared)
    raw_kib = sum(p.size for p in prepared) / 1024 / len(prepared)
    print(f"{args.messages} messages, mean raw {raw_kib:.1f} KiB, mean header+body text {text_kib:.1f} KiB")
    print(f"{'body cap':>10} {'word KiB/msg':>13} {'trigram KiB/msg':>16} {'trigram/text':>13} "
          f"{'index s':>8} {'mid-word ms':>12}")
    for cap in (4 << 10, 16 << 10, 64 << 10):
        with tempfile.TemporaryDirectory() as tmp:
            r = build(Path(tmp) / "i.db", prepared, cap)
        print(f"{cap // 1024:>8}Ki {r['word_kib']:>13.2f} {r['trgm_kib']:>16.2f} {r['trgm_kib'] / text_kib:>13.2f} "
              f"{r['trgm_s']:>8.2f} {r['midword_ms']:>8.1f} ({r['midword_hits']})")


if __name__ == "__main__":
    main()
