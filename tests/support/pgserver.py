"""Start a throwaway PostgreSQL server from Debian's binaries on loopback for the test session.

Each test process starts its own (under pytest-xdist, one per worker): its own directory,
its own port, found free just before the start and found again if another process took it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass


START_ATTEMPTS = 5  # a port taken between finding it free and the server binding it: try another


def _bindir() -> str | None:
    env = os.environ.get("POSTROOM_PG_BINDIR")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return os.path.dirname(found[-1]) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PgServer:
    bindir: str
    root: str
    port: int
    as_user: list[str]

    @property
    def admin_url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, db: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{db}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def stop(self) -> None:
        try:
            self._run(f"{self.bindir}/pg_ctl", "-D", f"{self.root}/data", "-m", "immediate", "-w", "stop")
        finally:
            remove_later(self.root)


def remove_later(root: str) -> None:
    """Remove the cluster's directory in a process of its own that outlives this one.

    By the end of a session it holds a database per pg test (each ~600 files, the big-folder ones
    hundreds of MB): removing them in the test process took 10-15 s, charged to the teardown of
    whichever test a worker happened to run last.
    """
    _removers.append(subprocess.Popen(["rm", "-rf", "--", root], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True))


_removers: list[subprocess.Popen] = []  # not waited for; referenced so that they are not reaped as garbage


def start(*, durable: bool = False) -> PgServer | None:
    """Start a server, or return None when PostgreSQL is not installed.

    Tests run it without disk syncs (below). ``durable`` keeps PostgreSQL's defaults (fsync,
    synchronous_commit, full_page_writes on), as production runs: what benchmarks measure.
    """
    bindir = _bindir()
    if bindir is None:
        return None
    root = tempfile.mkdtemp(prefix="postroom-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        os.chmod(root, 0o755)
        as_user = ["runuser", "-u", "postgres", "--"]
    srv = PgServer(bindir, root, 0, as_user)
    srv._run(f"{bindir}/initdb", "-D", f"{root}/data", "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")  # a throwaway cluster: no disk syncs (below too)
    for attempt in range(START_ATTEMPTS):
        # The port is picked after initdb (seconds): the shorter the gap, the less likely another
        # process (a test server, another xdist worker's PostgreSQL) binds it first.
        srv.port = _free_port()
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{root}/log")  # this attempt's words only
        # fsync and synchronous_commit off: what the tests kill is Postroom, never this server, so a commit
        # it acknowledged stays visible; each commit no longer waits for the disk (shared by every test).
        opts = (f"-p {srv.port} -k {root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                "-c shared_buffers=128MB")
        if not durable:
            opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        try:
            srv._run(f"{bindir}/pg_ctl", "-D", f"{root}/data", "-o", opts, "-l", f"{root}/log", "-w", "start")
            return srv
        except subprocess.CalledProcessError:
            with open(f"{root}/log", errors="replace") as f:
                taken = "Address already in use" in f.read()
            if not taken or attempt == START_ATTEMPTS - 1:
                shutil.rmtree(root, ignore_errors=True)
                raise
    raise AssertionError("unreachable")
