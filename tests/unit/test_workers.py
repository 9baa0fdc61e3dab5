"""The worker supervisor's parts: restart policy, worker count, listener binding, the change fan-out between siblings."""

from __future__ import annotations

import asyncio
import os
import socket
import signal
import subprocess
import sys

import pytest

from mailboxes import pgbus
from mailboxes.changes import FolderChanged
from mailboxes.fanout import FanoutBus
from mailboxes.model import FolderRef
from mailserver import config as config_mod
from mailserver import workers
from mailserver.workers import (
    BACKOFF_FIRST, MAX_START_FAILURES, START_WINDOW, RestartPolicy, SupervisorError, WorkerSpec,
)


def test_a_worker_that_ran_a_while_is_restarted_soon_and_failed_starts_back_off_then_give_up():
    p = RestartPolicy()
    assert p.after_exit(START_WINDOW + 1) == BACKOFF_FIRST
    delays = [p.after_exit(0.5) for _ in range(MAX_START_FAILURES)]
    assert delays[:-1] == [BACKOFF_FIRST * 2 ** i for i in range(MAX_START_FAILURES - 1)]
    assert delays[-1] is None  # keeps failing at start: give up
    p = RestartPolicy()
    for _ in range(MAX_START_FAILURES - 1):
        p.after_exit(0.5)
    assert p.after_exit(START_WINDOW * 2) == BACKOFF_FIRST  # it ran: the count starts again
    assert p.after_exit(0.5) == BACKOFF_FIRST
    p = RestartPolicy(0.01)  # [server] worker_restart_ms = 10
    assert [p.after_exit(0.5) for _ in range(MAX_START_FAILURES)] == [0.01, 0.02, 0.04, None]


def test_worker_count_defaults_to_the_cores_at_most_two_on_sqlite_and_the_flag_wins(monkeypatch):
    cfg = config_mod.build({})  # the embedded SQLite store
    cores = len(os.sched_getaffinity(0))
    assert workers.worker_count(None, cfg) == min(cores, 2)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)))
    assert workers.worker_count(None, cfg) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0})
    assert workers.worker_count(None, cfg) == 1
    monkeypatch.undo()
    pg = config_mod.build({"storage": {"url": "postgresql://mail@db.example/postroom"}})
    assert workers.worker_count(None, pg) == len(os.sched_getaffinity(0))
    # A PostgreSQL directory with SQLite partitions still has one SQLite writer lock.
    mixed = config_mod.build({"storage": {"url": "postgresql://mail@db.example/postroom", "mode": "department",
                                          "partition_url": "sqlite:////var/lib/postroom/{name}.db"}})
    assert workers.worker_count(None, mixed) == min(cores, 2)
    assert workers.worker_count(3, cfg) == 3
    assert workers.worker_count(2, pg) == 2
    assert workers.worker_count(None, config_mod.build({"server": {"workers": 4}})) == 4
    assert workers.worker_count(None, config_mod.build({"server": {"workers": 1}})) == 1
    with pytest.raises(SupervisorError):
        workers.worker_count(-1, cfg)


def test_the_spec_travels_through_the_environment(monkeypatch):
    spec = WorkerSpec(2, 3, {"smtp": 7, "imap": 9}, "/tmp/x", 123)
    monkeypatch.setenv(workers.ENV_VAR, spec.to_env())
    assert WorkerSpec.from_env() == spec
    assert spec.siblings == ["1", "2", "3"]
    monkeypatch.delenv(workers.ENV_VAR)
    assert WorkerSpec.from_env() is None


def _config(tmp_path, **listen) -> config_mod.Config:
    base = {k: "" for k in ("smtp", "submission", "submissions", "imap", "imaps", "http")}
    return config_mod.build({"server": {"data_dir": str(tmp_path)}, "listen": {**base, **listen}})


def test_each_listener_is_one_socket_every_worker_inherits(tmp_path):
    cfg = _config(tmp_path, smtp="127.0.0.1:0", imap="127.0.0.1:0", imaps="127.0.0.1:0")
    bound = workers.bind_listeners(cfg)
    try:
        assert set(bound) == {"smtp", "imap"}  # no certificate: the TLS-only listener is not bound
        for s in bound.values():
            assert s.get_inheritable()
            assert not s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)  # nobody else may share the port
        port = bound["smtp"].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            pass  # the kernel queues it for whichever worker takes it
    finally:
        workers.close_all(bound)


def test_an_address_in_use_is_one_readable_error_even_against_reuseport(tmp_path):
    with socket.socket() as other:  # another server that shares by SO_REUSEPORT itself
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(SupervisorError, match=rf"cannot listen on 127.0.0.1:{port} \(\[listen\] submission\)"):
            workers.bind_listeners(_config(tmp_path, smtp="127.0.0.1:0", submission=f"127.0.0.1:{port}"))


async def test_fanout_carries_a_sibling_event_once_and_never_echoes(tmp_path):
    buses = [FanoutBus(str(tmp_path), s, ["1", "2", "3"]) for s in ("1", "2")]  # worker 3 is not running
    for b in buses:
        b.start()
    ref = FolderRef("main", 42)
    here, there = buses[0].listen(ref), buses[1].listen(ref)
    try:
        buses[0].publish(ref, FolderChanged(ref, 7, "append"))
        assert (await asyncio.wait_for(there.get(), 5)) == FolderChanged(ref, 7, "append")
        assert here.queue.get_nowait() == FolderChanged(ref, 7, "append")  # the local bus as before
        assert buses[0].dropped == 1  # worker 3's socket is not there: dropped, not waited for
        buses[1].publish(ref, FolderChanged(ref, 8, "acl"))
        assert (await asyncio.wait_for(here.get(), 5)).kind == "acl"
        assert here.identity_events == 1
        assert there.queue.get_nowait().highestmodseq == 8  # its own, locally
        # Worker 1 received 8 before publishing 9; had it sent 8 on, 2 would get that first (one
        # sender's datagrams keep their order).
        buses[0].publish(ref, FolderChanged(ref, 9, "flags"))
        assert (await asyncio.wait_for(there.get(), 5)).highestmodseq == 9
        assert there.queue.empty()
        assert buses[0].received == 1 and buses[1].received == 2
    finally:
        for b in buses:
            b.close()
    assert not list(tmp_path.iterdir())  # the sockets are removed


async def test_fanout_ignores_garbage(tmp_path):
    bus = FanoutBus(str(tmp_path), "1", ["1", "2"])
    bus.start()
    ref = FolderRef("main", 1)
    lst = bus.listen(ref)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"not:an:event", str(tmp_path / "1"))
            s.sendto(b"2:main:1:5:append", str(tmp_path / "1"))
        assert (await asyncio.wait_for(lst.get(), 5)).highestmodseq == 5
        assert bus.received == 1
    finally:
        bus.close()


async def test_a_wake_reaches_the_siblings_once_a_loop_turn_and_never_comes_back(tmp_path):
    buses = [FanoutBus(str(tmp_path), s, ["1", "2"]) for s in ("1", "2")]
    for b in buses:
        b.start()
    woken = {"1": 0, "2": 0}
    arrived = asyncio.Event()
    buses[0].on_wake("events", lambda: woken.__setitem__("1", woken["1"] + 1))
    buses[1].on_wake("events", lambda: (woken.__setitem__("2", woken["2"] + 1), arrived.set()))
    buses[1].on_wake("other", lambda: woken.__setitem__("other", 1))
    try:
        for _ in range(1000):  # a burst of posts in one loop turn
            buses[0].wake("events")
        assert woken["1"] == 1000  # the local workers at once, each time
        async with asyncio.timeout(5):
            await arrived.wait()
        await asyncio.sleep(0)
        assert buses[0].sent == 1 and woken["2"] == 1 and "other" not in woken  # one datagram for the burst
        arrived.clear()
        buses[0].wake("events")  # a later turn: sent again
        async with asyncio.timeout(5):
            await arrived.wait()
        assert buses[0].sent == 2 and buses[1].received == 2 and buses[1].sent == 0  # nothing sent on
        assert woken["1"] == 1001
    finally:
        for b in buses:
            b.close()


def test_wake_payloads_parse_and_malformed_ones_do_not():
    assert pgbus.parse("abc:*wake:events") == ("abc", "events")
    assert pgbus.parse("abc:main:7:9:append") == ("abc", FolderChanged(FolderRef("main", 7), 9, "append"))
    for bad in ("abc:wake:events", ":*wake:events", "abc:*wake:", "abc:*wake", "abc:main:x:9:append"):
        assert pgbus.parse(bad) is None, bad


def test_the_change_sockets_live_in_the_data_directory_unless_its_path_is_too_long(tmp_path):
    short = workers.bus_directory(_config(tmp_path))
    assert short.startswith(str(tmp_path.resolve() / "run" / "bus-"))
    assert os.stat(short).st_mode & 0o777 == 0o700
    deep = tmp_path / ("d" * 120)
    long = workers.bus_directory(_config(deep))
    assert not long.startswith(str(deep)) and os.stat(long).st_mode & 0o777 == 0o700
    os.rmdir(short)
    os.rmdir(long)



async def test_the_supervisor_signals_workers_without_a_waitpid_of_its_own(tmp_path, monkeypatch):
    """CI: a worker that had drained on the group's SIGTERM was reaped by Process.send_signal's Popen.poll()
    before asyncio's child watcher, which then reported exit code 255 ("workers stopped with errors").
    The supervisor signals with os.kill, so only the watcher ever reaps (the race itself needs a loaded
    machine; what is checked here is that its cause, a poll by the supervisor, is gone)."""
    cfg = config_mod.build({"server": {"data_dir": str(tmp_path)}})
    sup = workers.Supervisor(cfg, {}, 1, str(tmp_path))
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
    sup.procs[1] = proc
    polled = []
    real_poll = subprocess.Popen.poll
    monkeypatch.setattr(subprocess.Popen, "poll", lambda self: polled.append(self.pid) or real_poll(self))
    sup.stop()
    assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGTERM
    assert polled == []


def test_turns_defer_to_the_sibling_with_fewer_connections_until_it_stops_taking_them(tmp_path, monkeypatch):
    from mailserver import proxylisten
    from mailserver.proxylisten import Turns

    load = {1: 0, 2: 0}
    path = str(tmp_path / "turns-smtp")
    one, two = (Turns(path, slot, 2, lambda slot=slot: load[slot]) for slot in (1, 2))
    try:
        assert not one.ahead() and not two.ahead()  # level: both take their turns
        load[1] = 3
        assert one.ahead()  # 3 against the 0 worker 2 published
        assert not two.ahead()
        assert not one.ahead(starting=-3)  # taken but not yet its service's: counted in
        assert two.ahead(starting=4)
        assert not two.ahead()  # published 0 again
        for _ in range(proxylisten.SLOW_AFTER - 1):  # worker 2 leaves what it was left waiting
            one.deferred(taken_by_sibling=False)
        assert one.ahead()
        one.deferred(taken_by_sibling=True)  # it took one: the count starts again
        for _ in range(proxylisten.SLOW_AFTER):
            one.deferred(taken_by_sibling=False)
        assert not one.ahead()  # busy or stuck: worker 1 takes its turns for TRUST_SECONDS
        monkeypatch.setattr(proxylisten.time, "monotonic", lambda: 10**9)
        assert one.ahead()
    finally:
        one.close()
        two.close()
