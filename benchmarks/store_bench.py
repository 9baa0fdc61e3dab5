"""Store baseline: appends per second (4 KiB, one at a time and in batches) and search latency, SQLite and PostgreSQL.

Usage: .venv/bin/python benchmarks/store_bench.py [--messages 100000] [--appends 2000] [--no-pg]

The search corpus is built with the store's own group-commit path (concurrent
deliveries), then searched for an English word and a two-character Chinese
word that each occur in about 1% of the messages, and for a rare word.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from argon2 import PasswordHasher  # noqa: E402

from mailboxes.ingest import prepare  # noqa: E402
from mailboxes.partitions import StorageConfig  # noqa: E402
from mailboxes.service import open_mailboxes  # noqa: E402
from mailboxes.store import Delivery  # noqa: E402

WORDS = ("report budget meeting review schedule tax office district approval document notice policy "
         "payment invoice audit quarterly annual summary request reply").split()
HANZI = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处队南给色光门即保治北造百规热领七海口东导器压志世金增争济阶油思术极交受联什认六共权收证改清己美再采转更单风切打白教速花带安场身车例真务具万每目至达走积示议声报斗完类八离华名确才科张信马节话米整空元况今集温传土许步群广石记需段研界拉林律叫且究观越织装影算低持音众书布复容儿须际商非验连断深难近矿千周委素技备半办青省列习响约支般史感劳便团往酸历市克何除消构府称太准精值号率族维划选标写存候毛亲快效斯院查江型眼王按格养易置派层片始却专状育厂京识适属圆包火住调满县局照参红细引听该铁价严"


def message(i: int, rng: random.Random, *, tag_en: bool, tag_zh: bool) -> bytes:
    words = [rng.choice(WORDS) for _ in range(60)]
    zh = "".join(rng.choice(HANZI) for _ in range(300))
    if tag_en:
        words.insert(rng.randrange(len(words)), "reconciliation")
    if tag_zh:
        pos = rng.randrange(len(zh))
        zh = zh[:pos] + "稽查" + zh[pos:]
    if i == 4242:
        words.append("zyzzyva")
    body = (" ".join(words) + "\n" + zh + "\n")
    head = (f"From: user{i % 50}@city.test\r\nTo: staff@city.test\r\nSubject: message {i} {rng.choice(WORDS)}\r\n"
            f"Date: Mon, 02 Nov 2026 10:00:00 +0800\r\nMessage-ID: <{i}.{rng.random()}@city.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    raw = head.encode() + body.encode()
    pad = 4096 - len(raw)
    if pad > 0:
        raw += (("x" * 70 + "\r\n") * (pad // 72 + 1)).encode()[:pad]
    return raw


async def bench_backend(name: str, url: str, n_search: int, n_append: int) -> dict[str, float]:
    mb = await open_mailboxes(StorageConfig(url=url), hasher=PasswordHasher(time_cost=1, memory_cost=1024))
    out: dict[str, float] = {}
    try:
        await mb.directory.add_domain("city.test")
        acct = await mb.add_account("bench@city.test", password="pw")
        rng = random.Random(1)
        msgs = [prepare(message(i, rng, tag_en=False, tag_zh=False)) for i in range(n_append)]
        t0 = time.perf_counter()
        for m in msgs:
            await mb.store.deliver(Delivery(m, ((acct, "INBOX"),)))
        out["append_one_at_a_time_per_s"] = n_append / (time.perf_counter() - t0)
        msgs = [prepare(message(i, rng, tag_en=False, tag_zh=False)) for i in range(n_append, 2 * n_append)]
        t0 = time.perf_counter()
        for i in range(0, len(msgs), 100):
            await asyncio.gather(*(mb.store.deliver(Delivery(m, ((acct, "INBOX"),))) for m in msgs[i:i + 100]))
        out["append_batched_100_per_s"] = n_append / (time.perf_counter() - t0)

        corpus = await mb.add_account("corpus@city.test", password="pw")
        rng = random.Random(2)
        t0 = time.perf_counter()
        batch = []
        for i in range(n_search):
            raw = message(i, rng, tag_en=(i % 100 == 7), tag_zh=(i % 100 == 13))
            batch.append(Delivery(prepare(raw), ((corpus, "INBOX"),)))
            if len(batch) == 250:
                await asyncio.gather(*(mb.store.deliver(d) for d in batch))
                batch.clear()
                print(f"\r  {name}: loading search corpus {i + 1}/{n_search}", end="", file=sys.stderr)
        if batch:
            await asyncio.gather(*(mb.store.deliver(d) for d in batch))
        print(file=sys.stderr)
        out["corpus_load_per_s"] = n_search / (time.perf_counter() - t0)
        inbox = await mb.store.folder(corpus, "INBOX")
        for label, col, q, expect in (("search_en_word_ms", "body", "reconciliation", n_search // 100),
                                      ("search_zh_2char_ms", "body", "稽查", n_search // 100),
                                      ("search_rare_word_ms", "body", "zyzzyva", 1 if n_search > 4242 else 0)):
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                hits = await mb.store.search_text(inbox.ref, col, q)
                times.append((time.perf_counter() - t0) * 1000)
            assert hits is not None and len(hits) >= expect, (label, len(hits or ()), expect)
            out[label] = statistics.median(times)
        out.update(await index_sizes(mb, corpus))
        t0 = time.perf_counter()
        metas = await mb.store.messages(inbox.ref)
        out["list_all_metas_ms"] = (time.perf_counter() - t0) * 1000
        assert len(metas) == n_search
    finally:
        await mb.close()
    return out


async def index_sizes(mb, account) -> dict[str, float]:
    """KiB per message of each full-text index (tables and their indexes), and of the blobs."""
    db = await mb.store._db(mb.store.home(account))  # noqa: SLF001 - a benchmark looks inside
    out = {}
    async with db.read() as conn:
        n_messages = (await conn.exec_driver_sql("SELECT count(*) FROM blobs")).scalar()
        if db.dialect == "sqlite":
            sizes = dict((await conn.exec_driver_sql("SELECT name, sum(pgsize) FROM dbstat GROUP BY name")).all())
            tables = {"word_index": "blob_fts", "substring_index": "blob_text", "blobs": "blobs"}
            for label, name in tables.items():
                own = sum(v for n, v in sizes.items() if n == name or n.startswith(name + "_"))
                out[f"kib_per_msg_{label}"] = own / 1024 / n_messages
        else:
            tables = {"word_index": "blob_search", "substring_index": "blob_text", "blobs": "blobs"}
            for label, name in tables.items():
                size = (await conn.exec_driver_sql(
                    f"SELECT coalesce(pg_total_relation_size(to_regclass('{name}')), 0)")).scalar()
                out[f"kib_per_msg_{label}"] = size / 1024 / n_messages
    return out


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000, help="search corpus size")
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--no-pg", action="store_true")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="postroom-bench-") as tmp:
        results["sqlite"] = await bench_backend("sqlite", f"sqlite:///{tmp}/bench.db", args.messages, args.appends)
    if not args.no_pg:
        from tests.support import pgserver
        srv = pgserver.start(durable=True)  # production settings: every commit on disk
        if srv is None:
            print("PostgreSQL not installed; skipping", file=sys.stderr)
        else:
            try:
                import asyncpg
                conn = await asyncpg.connect(host="127.0.0.1", port=srv.port, user="postgres", database="postgres")
                await conn.execute("CREATE DATABASE bench")
                await conn.close()
                results["postgresql"] = await bench_backend("postgresql", srv.url("bench"), args.messages,
                                                            args.appends)
            finally:
                srv.stop()
    keys = list(next(iter(results.values())).keys())
    print(f"\nstore benchmark: {args.messages} messages in the search corpus, 4 KiB each")
    print(f"{'figure':32}" + "".join(f"{b:>14}" for b in results))
    for k in keys:
        print(f"{k:32}" + "".join(f"{results[b][k]:>14.1f}" for b in results))


if __name__ == "__main__":
    asyncio.run(main())
