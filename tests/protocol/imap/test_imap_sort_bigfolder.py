"""SORT and THREAD on a 10,000-message folder through imapclient, another session served meanwhile (slow).

How long they take is a figure of benchmarks/imap_bench.py."""

from __future__ import annotations

import imaplib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from imapclient import IMAPClient

from .harness import PASSWORD
from .test_imap_bigfolder import N, big  # noqa: F401  # the same 10,000-message folder, built afresh for this module

pytestmark = pytest.mark.slow


def test_sort_and_thread_10000_messages(big):  # noqa: F811
    c = IMAPClient("127.0.0.1", port=big.port, ssl=False, timeout=120)
    c.login("alice@city.test", PASSWORD)
    c.select_folder("INBOX")
    other = imaplib.IMAP4("127.0.0.1", big.port, timeout=60)
    other.login("alice@city.test", PASSWORD)
    with ThreadPoolExecutor(1) as pool:
        job = pool.submit(c.thread, "REFERENCES", "ALL", "UTF-8")  # cold: every stored parse is loaded
        slowest = 0.0
        while not job.done():  # another session is served meanwhile: the event loop is not held for long
            t1 = time.monotonic()
            assert other.noop()[0] == "OK"
            slowest = max(slowest, time.monotonic() - t1)
        threads = job.result()
    assert slowest < 2  # a stall bound, generous: about 0.06 s here, against 0.003 s for a NOOP on an idle server
    other.logout()
    # threads of five: the first message and its four replies (References: <first>), siblings by date
    assert len(threads) == N // 5
    for root, *replies in threads:  # (1 (2)(3)(4)(5)): UID = i + 1
        assert sorted(r for (r,) in replies) == [root + 1, root + 2, root + 3, root + 4]
    by_date = c.sort(["DATE"])
    by_subject = c.sort(["REVERSE", "SUBJECT"])
    assert sorted(by_date) == list(range(1, N + 1)) and by_date != sorted(by_date)
    assert by_subject[0] == 10000 and by_subject[-1] == 1  # "message 9999 ..." down to "message 0 ..."
    assert len(c.thread("ORDEREDSUBJECT", "ALL", "UTF-8")) == N  # every base subject differs
    c.logout()
