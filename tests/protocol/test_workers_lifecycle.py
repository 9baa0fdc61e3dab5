"""`postroom serve --workers 2` as a real subprocess: a port in use, workers failing at start, a killed worker replaced.

The Server helper and the log format are test_workers.py's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
from collections import Counter

import aiosmtplib
import pytest

from .smtp.support import wait_for
from .test_workers import CONNECTIONS_FOR_BOTH, TXN_LINE, Server, inbox_subjects, message

pytestmark = pytest.mark.slow


def _holds_a_write_lock(pid: int) -> bool:
    """Whether `pid` holds an exclusive file lock (the store's write lock, SQLite's WAL write lock) now."""
    with open("/proc/locks") as f:
        return any(line.split()[3:5] == ["WRITE", str(pid)] for line in f)


async def stop_between_writes(pid: int) -> None:
    """SIGSTOP a worker at a moment it holds no write lock: stopped inside a write, it would stop every writer
    (as a stuck process would), which is not what these tests are about."""
    for _ in range(1000):
        os.kill(pid, signal.SIGSTOP)
        await wait_for(lambda: open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "T",
                       what="the worker stopped")
        if not _holds_a_write_lock(pid):
            return
        os.kill(pid, signal.SIGCONT)
        await asyncio.sleep(0.01)  # let it finish that write
    raise AssertionError(f"worker {pid} never stopped between writes")


async def test_a_port_in_use_stops_the_start_with_one_clear_line(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", srv.ports["imap"]))
        taken.listen()
        proc = await srv.command("serve", "--workers", "2")
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{srv.ports['imap']} ([listen] imap)" in err.decode(), err
    assert b"worker 1 started" not in err  # nothing was started


async def test_workers_that_keep_failing_at_start_stop_the_server_with_exit_1(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db", restart_ms=10)  # backs off 10, 20, 40 ms
    await srv.init([])
    (tmp_path / "data" / "tls" / "cert.pem").write_text("not a certificate\n")  # only a worker loads it
    proc = await srv.command("serve", "--workers", "2")
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 1
    last = err.decode().strip().splitlines()[-1]
    assert re.fullmatch(r"postroom: error: worker [12] exited \(exit code 1\) within 10 s of starting, "
                        r"4 times in a row; giving up \(see its log\)", last), last
    assert "exited unexpectedly (exit code 1); restarting in 0.02 s" in err.decode()  # [server] worker_restart_ms


async def test_a_killed_worker_is_replaced_and_its_turns_on_the_socket_go_to_the_other_meanwhile(tmp_path):
    reader = "li.na@city.test"
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    mb = await srv.init([reader])
    await srv.start()
    started = re.compile(r"worker 1 started \(pid (\d+)\)")
    [first] = started.findall(srv.log.read_text())
    os.kill(int(first), signal.SIGKILL)

    async def send(i: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.ports["smtp"], start_tls=False, timeout=60,
                                   local_hostname=f"k{i}.outside.example") as smtp:
            await smtp.sendmail("sender@outside.example", [reader], message(f"k{i}", reader))

    try:
        await asyncio.gather(*(send(i) for i in range(16)))  # while worker 1 is dead or restarting
        await wait_for(lambda: len(started.findall(srv.log.read_text())) == 2
                       and srv.log.read_text().count(" of 2)") == 3, timeout=60, what="the replacement serving")
        [_, second] = started.findall(srv.log.read_text())
        assert "worker 1 (pid %s) exited unexpectedly (signal SIGKILL)" % first in srv.log.read_text()
        sent = 16
        while not any(m[0] == "1" and m[1] == second for m in TXN_LINE.findall(srv.log.read_text())):
            await send(sent)  # both take turns again: the replacement soon takes one
            sent += 1
            assert sent < 16 + CONNECTIONS_FOR_BOTH, "the replacement never took a connection"
        await wait_for(lambda: len(TXN_LINE.findall(srv.log.read_text())) == sent, what="every transaction logged")
        served = Counter((int(m[1]), m[2]) for m in TXN_LINE.finditer(srv.log.read_text()))  # (slot, pid)
        assert sum(served.values()) == sent
        assert sum((await inbox_subjects(mb, reader)).values()) == sent
    finally:
        code = await srv.stop()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]


async def test_a_stopped_worker_strands_no_new_connection(tmp_path):
    """A worker that cannot run (stopped here; stuck, in real life) takes no turn on the shared socket: every
    new session is greeted and served by the other. (With a socket per worker, the kernel hashed about half
    of them to the stopped one's queue, where they waited without a greeting.)"""
    reader = "li.na@city.test"
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    mb = await srv.init([reader])
    await srv.start()
    [stopped] = re.findall(r"worker 1 started \(pid (\d+)\)", srv.log.read_text())
    await stop_between_writes(int(stopped))
    try:
        async def send(i: int) -> None:
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.ports["smtp"], start_tls=False, timeout=30,
                                       local_hostname=f"s{i}.outside.example") as smtp:
                await smtp.sendmail("sender@outside.example", [reader], message(f"s{i}", reader))

        await asyncio.gather(*(send(i) for i in range(12)))
        await wait_for(lambda: len(TXN_LINE.findall(srv.log.read_text())) == 12, what="12 transactions logged")
        assert Counter(m[0] for m in TXN_LINE.findall(srv.log.read_text())) == {"2": 12}
        os.kill(int(stopped), signal.SIGCONT)
        assert sum((await inbox_subjects(mb, reader)).values()) == 12
    finally:
        os.kill(int(stopped), signal.SIGCONT)  # (again, if an assertion came first: else stop() waits on it)
        code = await srv.stop()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]


async def test_two_workers_both_serve_the_webmail(tmp_path):
    """[listen] http under --workers 2: the supervisor binds it once like the mail listeners and both workers
    take turns on it, so the second worker neither fails on "address in use" nor is left out."""
    srv = Server(tmp_path, f"sqlite:///{tmp_path / 'data' / 'postroom.db'}", http=True)
    mb = await srv.init([])
    await srv.start()
    try:
        for _ in range(CONNECTIONS_FOR_BOTH):  # each a new connection, taken by whichever worker is free
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.ports["http"])
            writer.write(b"GET /login HTTP/1.1\r\nHost: mail.city.test\r\nConnection: close\r\n\r\n")
            status = await asyncio.wait_for(reader.readline(), 30)
            assert status.startswith(b"HTTP/1.1 200"), status
            writer.close()
        assert srv.log_since(0).count("webmail listening on http") == 2
    finally:
        code = await srv.stop()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]


async def test_sigterm_to_the_whole_group_and_a_late_one_still_stop_with_exit_0(tmp_path):
    """systemd signals every process of the unit, and the supervisor forwards its own SIGTERM: each worker
    gets two. One more reaching a worker after it has drained (while Python tears down) must not kill it,
    or the supervisor reports a failed stop (CI saw "workers stopped with errors: 2 (signal SIGTERM)")."""
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    mb = await srv.init([])
    await mb.close()
    await srv.start()
    workers = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", srv.log_since(0))]
    assert len(workers) == 2
    os.killpg(srv.proc.pid, signal.SIGTERM)  # start_new_session: the supervisor leads the group
    for pid in workers:  # and again, to each, as its drain ends
        await wait_for(lambda pid=pid: f"pid {pid}] postroom stopped" in srv.log_since(0), timeout=60,
                       what="the worker to drain")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    assert await asyncio.wait_for(srv.proc.wait(), 90) == 0, srv.log_since(0)[-3000:]
    assert "all 2 workers stopped" in srv.log_since(0)


async def test_new_sessions_go_to_the_worker_that_holds_fewer(tmp_path):
    """Worker 1 holds ten open sessions (taken while worker 2 was stopped); the next ten go to worker 2, not
    half to each (the kernel's hash of a socket per worker) nor to whichever wakes first."""
    reader = "li.na@city.test"
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    mb = await srv.init([reader])
    await srv.start()
    [second] = re.findall(r"worker 2 started \(pid (\d+)\)", srv.log.read_text())
    held: list[aiosmtplib.SMTP] = []

    async def open_and_send(tag: str) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=srv.ports["smtp"], start_tls=False, timeout=30,
                               local_hostname=f"{tag}.outside.example")
        await smtp.connect()
        held.append(smtp)
        await smtp.sendmail("sender@outside.example", [reader], message(tag, reader))  # stays open after

    def slots(prefix: str) -> Counter:
        return Counter(m[0] for m in TXN_LINE.findall(srv.log.read_text()) if m[2].startswith(prefix))

    try:
        await stop_between_writes(int(second))
        try:
            await asyncio.gather(*(open_and_send(f"a{i}") for i in range(10)))
        finally:
            os.kill(int(second), signal.SIGCONT)
        await wait_for(lambda: sum(slots("a").values()) == 10, what="10 transactions logged")  # (after the 250)
        assert slots("a") == {"1": 10}
        await asyncio.gather(*(open_and_send(f"b{i}") for i in range(10)))
        await wait_for(lambda: sum(slots("b").values()) == 10, what="10 more transactions logged")
        # The busier worker defers each one 20 ms (proxylisten.DEFER_SECONDS), then takes it: on a loaded
        # machine (make test) the sibling missed that window for 2 of 10 once. By chance 8+ of 10: 5 %.
        assert slots("b")["2"] >= 8, slots("b")
    finally:
        for smtp in held:
            with contextlib.suppress(Exception):
                await smtp.quit()
        code = await srv.stop()
        await mb.close()
    assert code == 0, srv.log.read_text(errors="replace")[-3000:]
