"""`postroom serve --workers N`: a supervisor that binds the listeners once and keeps N worker processes serving them.

Implementation notes
- The supervisor binds, the workers accept. Each listener is one socket, bound
  once (an address another server holds, even one sharing by SO_REUSEPORT, is
  an error, not a silent share of the port) and inherited by every worker.
  The workers take turns on it, one connection per turn of their event loop
  (mailserver/proxylisten.py's ProxyListener): a new connection goes to a worker that
  is free to take it. (With one SO_REUSEPORT socket each, the kernel hashed
  connections to workers: 20 sessions split 8/12 in two of five tries, so the
  busier worker held the rest back, and a stopped or stuck worker left the
  connections hashed to it waiting.) Because the supervisor keeps its copy,
  a worker that dies does not take the socket with it, and a port in use is
  reported once, before anything starts.
- The store is prepared once, in the supervisor, before any worker starts:
  migrations of the central database and of every known partition run here,
  not racing in N processes (workers open the store with `migrate=False`).
- Workers are fresh interpreters (`python -m mailserver.cli serve`), not
  forks of a process that has run threads and an event loop; they find their
  slot, sockets and siblings in $POSTROOM_WORKER. Each one is the one-process
  server (mailserver.app.serve) with its listeners adopted, its log lines
  tagged `[worker I pid P]`, and its own store, pool and queue runner.
- The queue runner runs in every worker. Claims are safe across processes:
  on PostgreSQL rows are claimed FOR UPDATE SKIP LOCKED; on SQLite a claim is
  one BEGIN IMMEDIATE transaction (select due rows, mark them claimed), and
  that lock is SQLite's database file lock, exclusive across processes, so
  two workers never claim one row; node ids are per process and a dead
  worker's claims come due again when their lease runs out (delivery.queue).
- Change events: on SQLite, mailboxes.fanout (Unix datagrams in a private
  directory the supervisor makes, see bus_directory); on PostgreSQL each
  worker LISTENs itself.
- SIGTERM and SIGINT are forwarded as SIGTERM; each worker drains as a
  one-process server does and exits 0. A worker that exits unexpectedly is
  restarted after a back-off; one that keeps failing within START_WINDOW of
  starting makes the supervisor stop the others and exit 1.
- The supervisor handles SIGTERM, so if it dies it was killed (SIGKILL, OOM)
  or crashed: its workers are then killed too (PR_SET_PDEATHSIG), as the one
  process would have been. Every 250 was committed first, so nothing
  acknowledged is lost, and a restart finds the ports free at once instead of
  held by orphans draining for DRAIN_SECONDS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from mailboxes.db import normalise_url
from mailboxes.service import open_mailboxes

from .config import Config
from .smtp.server import KINDS as SMTP_KINDS

log = logging.getLogger("postroom.workers")

ENV_VAR = "POSTROOM_WORKER"
BACKLOG = 1024  # per worker socket (as the one-process IMAP listener)
IMPLICIT_TLS = {name for name, kind in SMTP_KINDS.items() if kind.implicit_tls} | {"imaps", "https"}
LISTENERS = (*SMTP_KINDS, "imap", "imaps", "http", "https")  # what the workers serve
START_WINDOW = 10.0  # seconds: a worker that exits sooner failed to start
MAX_START_FAILURES = 4  # in a row, for one slot; then the supervisor gives up
BACKOFF_FIRST = 1.0  # seconds before a restart, doubled per failed start ([server] worker_restart_ms)
BACKOFF_MAX = 30.0
STOP_SECONDS = 60.0  # after forwarding SIGTERM (the services drain for at most 20 s each), then SIGKILL
PR_SET_PDEATHSIG = 1
SOCKET_PATH_MAX = 100  # bytes; Linux takes 107 for an AF_UNIX path, and the slot number follows the directory


class SupervisorError(Exception):
    """Something that stops the server from starting or keeps it from running; one readable line."""


def on_sqlite(config: Config) -> bool:
    """Whether the store (the central database or a partition's) is an SQLite file."""
    storage = config.storage()
    urls = [storage.url] + ([storage.partition_url] if storage.partition_url else [])
    return any(make_url(normalise_url(u)).get_backend_name() == "sqlite" for u in urls)


SQLITE_WORKERS = 2  # automatic worker count on SQLite at most (see worker_count)


def worker_count(cli_value: int | None, config: Config) -> int:
    """--workers, else [server] workers, where 0 means automatic: one per CPU core, at most SQLITE_WORKERS on SQLite.

    SQLite lets one transaction write at a time: the workers take turns on its lock (a flock,
    db.py), each group-committing its own sessions. With search indexing out of the delivery's
    path two workers delivered more than one at 20 and 50 sessions in every run (2 cores,
    smtp_bench, 2026-12-05: 753-886 against 884-989 msg/s at 20, 885-960 against 986-1,223 at 50)
    and about as much at 1 (385-422 against 419-421), with no worse p99; four on the two cores
    delivered less than two, and more cores were not measured: hence the cap.
    """
    n = cli_value if cli_value is not None else config.get("server", "workers")
    if n < 0:
        raise SupervisorError("--workers must be 0 (automatic) or more")
    if n:
        return n
    cores = len(os.sched_getaffinity(0))
    return min(cores, SQLITE_WORKERS) if on_sqlite(config) else cores


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process is told by its supervisor (through $POSTROOM_WORKER)."""

    slot: int  # 1..count, stable across restarts
    count: int
    fds: dict[str, int]  # listener name -> inherited listening socket
    bus_dir: str  # where the siblings' change sockets are (mailboxes.fanout)
    supervisor: int  # its pid

    def to_env(self) -> str:
        return json.dumps({"slot": self.slot, "count": self.count, "fds": self.fds, "bus_dir": self.bus_dir,
                           "supervisor": self.supervisor})

    @classmethod
    def from_env(cls) -> WorkerSpec | None:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            return None
        d = json.loads(raw)
        return cls(int(d["slot"]), int(d["count"]), {k: int(v) for k, v in d["fds"].items()}, str(d["bus_dir"]),
                   int(d["supervisor"]))

    @property
    def name(self) -> str:
        return str(self.slot)

    @property
    def siblings(self) -> list[str]:
        return [str(i) for i in range(1, self.count + 1)]

    def sockets(self) -> dict[str, socket.socket]:
        return {name: socket.socket(fileno=fd) for name, fd in self.fds.items()}


def tag_logs(tag: str) -> None:
    """Every log line of this process names it (`[worker 2 pid 123]`, `[supervisor]`)."""
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s %(name)s [{tag}] %(message)s")
    for handler in logging.getLogger().handlers:
        handler.setFormatter(fmt)


def die_with(supervisor: int) -> None:
    """Be killed when the supervisor dies (Linux; see the notes), and die now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGKILL)


# --- the supervisor ----------------------------------------------------------------------------


def bind_listeners(config: Config) -> dict[str, socket.socket]:
    """One listening socket per configured listener, shared by every worker; a clear error if one cannot be had.

    Bound without SO_REUSEPORT, so an address another server holds (even one that shares by
    SO_REUSEPORT itself) is an error, not a silent share of the port.
    """
    tls_ready = config.tls_cert.exists() and config.tls_key.exists()
    out: dict[str, socket.socket] = {}
    try:
        for name in LISTENERS:
            where = config.listen(name)
            if where is None or (name in IMPLICIT_TLS and not tls_ready):
                continue  # the workers warn about a TLS listener without a certificate
            host, port = where
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            try:
                s = out[name] = socket.socket(family, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
                s.listen(BACKLOG)
                s.set_inheritable(True)
            except OSError as exc:
                raise SupervisorError(f"cannot listen on {host}:{port} ([listen] {name}): "
                                      f"{exc.strerror or exc}") from None
    except BaseException:
        close_all(out)
        raise
    return out


def close_all(listeners: dict[str, socket.socket]) -> None:
    for s in listeners.values():
        s.close()


async def prepare_store(config: Config) -> None:
    """Migrate the central database and every partition once, before the workers open them."""
    mb = await open_mailboxes(config.storage(), hash_slots=1)
    try:
        for name in sorted(await mb.router.known()):
            await mb.router.database(name)  # opening a partition brings its schema up to date
    finally:
        await mb.close()


class RestartPolicy:
    """When to restart one worker slot after its process exited, and when to give up (pure)."""

    def __init__(self, first: float = BACKOFF_FIRST) -> None:
        self.first = first  # seconds before the first restart
        self.failures = 0  # exits within START_WINDOW of starting, in a row

    def after_exit(self, uptime: float) -> float | None:
        """Seconds to wait before the restart, or None: it keeps failing at start, give up."""
        if uptime >= START_WINDOW:
            self.failures = 0
            return self.first
        self.failures += 1
        if self.failures >= MAX_START_FAILURES:
            return None
        return min(BACKOFF_MAX, self.first * 2 ** (self.failures - 1))


class Supervisor:
    def __init__(self, config: Config, listeners: dict[str, socket.socket], count: int, bus_dir: str) -> None:
        self.config = config
        self.listeners = listeners
        self.count = count
        self.bus_dir = bus_dir
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()

    def command(self) -> list[str]:
        cfg = ["--config", str(self.config.path)] if self.config.path is not None else []
        return [sys.executable, "-m", "mailserver.cli", *cfg, "serve"]

    async def spawn(self, slot: int) -> asyncio.subprocess.Process:
        fds = {name: sock.fileno() for name, sock in self.listeners.items()}
        spec = WorkerSpec(slot, self.count, fds, self.bus_dir, os.getpid())
        proc = await asyncio.create_subprocess_exec(
            *self.command(), stdin=asyncio.subprocess.DEVNULL, pass_fds=tuple(fds.values()),
            env={**os.environ, ENV_VAR: spec.to_env()})
        self.procs[slot] = proc
        log.info("worker %d started (pid %d)", slot, proc.pid)
        if self.stopping.is_set():  # the stop came while it was being started
            signal_worker(proc, signal.SIGTERM)
        return proc

    async def keep(self, slot: int) -> int:
        """Run one slot until the stop; restart its worker when it dies. Returns its last exit code."""
        loop = asyncio.get_running_loop()
        policy = RestartPolicy(self.config.get("server", "worker_restart_ms") / 1000)
        while True:
            started = loop.time()
            proc = await self.spawn(slot)
            code = await proc.wait()
            if self.stopping.is_set():
                return code
            delay = policy.after_exit(loop.time() - started)
            if delay is None:
                raise SupervisorError(f"worker {slot} exited ({describe(code)}) within {START_WINDOW:.0f} s of "
                                      f"starting, {policy.failures} times in a row; giving up (see its log)")
            log.error("worker %d (pid %d) exited unexpectedly (%s); restarting in %.3g s",
                      slot, proc.pid, describe(code), delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
            if self.stopping.is_set():
                return 0

    def stop(self) -> None:
        if self.stopping.is_set():
            return  # each worker is told once (a worker spawned after this is told by spawn()): a second
            # SIGTERM could reach one that has drained and is exiting, and kill it ("stopped with errors")
        log.info("stopping: SIGTERM to %d workers", len(self.procs))
        self.stopping.set()
        for proc in self.procs.values():
            if proc.returncode is None:
                signal_worker(proc, signal.SIGTERM)

    async def run(self) -> int:
        slots = [asyncio.create_task(self.keep(i), name=f"worker-{i}") for i in range(1, self.count + 1)]
        stopped = asyncio.create_task(self.stopping.wait())
        failure: SupervisorError | None = None
        pending = set(slots)
        while pending and not stopped.done():
            done, pending = await asyncio.wait(pending | {stopped}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(stopped)
            for task in done & set(slots):
                exc = task.exception()
                if exc is not None:  # gave up on a slot, or could not even spawn its worker
                    failure = exc if isinstance(exc, SupervisorError) else SupervisorError(
                        f"{task.get_name()}: {exc.__class__.__name__}: {exc}")
                    self.stop()
        self.stop()
        done, late = await asyncio.wait(slots, timeout=STOP_SECONDS)
        for proc in self.procs.values():
            if proc.returncode is None:
                log.error("worker pid %d did not stop within %.0f s; killing it", proc.pid, STOP_SECONDS)
                signal_worker(proc, signal.SIGKILL)
        if late:
            await asyncio.wait(late)
        if failure is not None:
            raise failure
        codes = {i: t.result() for i, t in enumerate(slots, 1) if t.exception() is None}
        bad = {i: c for i, c in codes.items() if c != 0}
        if bad:
            raise SupervisorError("workers stopped with errors: "
                                  + ", ".join(f"{i} ({describe(c)})" for i, c in sorted(bad.items())))
        log.info("all %d workers stopped", self.count)
        return 0


def signal_worker(proc: asyncio.subprocess.Process, sig: int) -> None:
    """Send `sig` to a worker with os.kill, never Process.send_signal / kill.

    Those call Popen.poll() first, whose waitpid reaps a worker that has just exited before
    asyncio's child watcher does; the watcher then finds no child and reports exit code 255
    ("Unknown child process"): a clean stop reported as "workers stopped with errors: 1 (exit
    code 255)" (CI, after a SIGTERM to the whole process group). Only the watcher reaps, so the
    pid cannot be reused meanwhile: signalling an exited, unreaped worker does nothing.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, sig)


def describe(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


def bus_directory(config: Config) -> str:
    """A new directory for the siblings' change sockets (mailboxes.fanout), mode 0700: this user's only.

    Under <data_dir>/run, where no /tmp cleaner ages the sockets away under a server that runs for
    weeks; in the temporary directory only if that path is too long for a socket address.
    """
    run = config.data_dir.resolve() / "run"
    if len(str(run)) + len("/bus-12345678/99") <= SOCKET_PATH_MAX:
        run.mkdir(mode=0o700, parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix="bus-", dir=run)
    return tempfile.mkdtemp(prefix="postroom-")


async def supervise(config: Config, count: int) -> int:
    """Bind, prepare the store, run `count` workers until SIGTERM/SIGINT; 0 when every worker stopped cleanly."""
    logging.getLogger().setLevel(config.get("server", "log_level").upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    tag_logs("supervisor")
    listeners = bind_listeners(config)
    bus_dir = bus_directory(config)
    try:
        await prepare_store(config)
        sup = Supervisor(config, listeners, count, bus_dir)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sup.stop)
        print(f"postroom supervisor: {count} workers on {', '.join(listeners) or 'no listeners'}", flush=True)
        return await sup.run()
    finally:
        close_all(listeners)
        shutil.rmtree(bus_dir, ignore_errors=True)
