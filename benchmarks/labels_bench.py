"""Classification labels: what finding the label a submitted message carries (Labels.carried) costs per shape of mail.

Usage: .venv/bin/python benchmarks/labels_bench.py [--rounds 2000]

With [labels] enabled, every submission is searched for the banners of labelled mail it quotes
or forwards (delivery/labels.py). A plain UTF-8 body is searched as written; any other body
(base64, quoted-printable, GBK, HTML, multipart) also has its text decoded as the search index
reads it. Printed: microseconds per message for each shape, and the ratio to the raw search
alone (the substring searches over the raw body, what a plain body costs), measured in the same
run. Large messages run off the event loop in the server (offload_if_large); the figure for one
is still CPU a submission costs.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from delivery.labels import Labels  # noqa: E402

HEAD = "From: zhang.wei@city.test\r\nTo: bob@outside.test\r\nSubject: Re: 采购申请\r\nMIME-Version: 1.0\r\n"
REPLY = "同意，请按流程办理。\r\n\r\n> 各位同事：\r\n" + "> 办公用品采购，金额 3,200 元，请审批。\r\n" * 40


def _b64(text: str, charset: str) -> bytes:
    return base64.encodebytes(text.encode(charset)).replace(b"\n", b"\r\n")


def shapes() -> dict[str, bytes]:
    plain = (HEAD + "Content-Type: text/plain; charset=utf-8\r\n\r\n" + REPLY).encode()
    gbk = (HEAD + "Content-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() \
        + _b64(REPLY, "gbk")
    html = "<p>" + REPLY.replace("\r\n", "<br>") + "</p>"
    alternative = (HEAD + "Content-Type: multipart/alternative; boundary=b1\r\n\r\n--b1\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() \
        + _b64(REPLY, "utf-8") + b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n" \
        + b"Content-Transfer-Encoding: base64\r\n\r\n" + _b64(html, "utf-8") + b"--b1--\r\n"
    attachment = base64.encodebytes(os.urandom(15 << 20)).replace(b"\n", b"\r\n")
    big = (HEAD + "Content-Type: multipart/mixed; boundary=b2\r\n\r\n--b2\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n").encode() \
        + _b64("见附件。\r\n", "utf-8") + b"--b2\r\nContent-Type: application/pdf; name=report.pdf\r\n" \
        + b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment + b"--b2--\r\n"
    return {"plain UTF-8 reply": plain, "GBK base64 reply (Foxmail)": gbk,
            "alternative, base64 (Outlook)": alternative, "20 MB PDF attached": big}


def per_call(fn, data: bytes, rounds: int) -> float:
    best = float("inf")
    for _ in range(3):  # best of three: the machine is noisy
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn(data)
        best = min(best, (time.perf_counter() - t0) / rounds)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    labels = Labels()
    markers = [m for lb in labels.labels for m in labels._markers[lb]]

    def raw_search(data: bytes) -> bool:
        body = data[data.find(b"\r\n\r\n"):]
        return any(m in body for m in markers)

    print(f"{'shape':32} {'octets':>10} {'carried µs':>11} {'raw search µs':>14} {'ratio':>6}")
    for name, data in shapes().items():
        assert labels.carried(data) is None  # nothing labelled quoted: the whole search runs
        rounds = max(1, args.rounds if len(data) < 1 << 20 else args.rounds // 500)
        full, raw = per_call(labels.carried, data, rounds), per_call(raw_search, data, rounds)
        print(f"{name:32} {len(data):>10,} {full * 1e6:>11,.0f} {raw * 1e6:>14,.0f} {full / raw:>6.1f}")


if __name__ == "__main__":
    main()
