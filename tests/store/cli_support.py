"""The `postroom` command tests' helpers: run it (in-process or in a fresh interpreter), a config per back-end, a ready store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mailboxes.model import Role
from mailboxes.service import open_mailboxes
from mailserver import cli
from mailserver import config as config_mod
from tests.conftest import FAST_HASHER

ROOT = Path(__file__).resolve().parents[2]


def run(cfg: Path, *args: str, stdin: str | None = None, ok: bool = True,
        fresh: bool = False) -> subprocess.CompletedProcess:
    """`postroom ARGS` as an administrator types it: `cli.main` with $POSTROOM_CONFIG set and stdin, stdout and
    stderr captured (a fresh interpreter costs about 1 s of imports a command under coverage, some 70 commands in
    these files); `fresh=True` runs `python -m mailserver.cli` in a subprocess, which the tests of `init` keep."""
    if fresh:
        env = {**os.environ, "POSTROOM_CONFIG": str(cfg)}
        p = subprocess.run([sys.executable, "-m", "mailserver.cli", *args], cwd=ROOT, env=env, input=stdin,
                           capture_output=True, text=True, timeout=120)
    else:
        p = _in_process(cfg, args, stdin)
    if ok:
        assert p.returncode == 0, (args, p.stdout, p.stderr)
    return p


def _main(argv: list[str]) -> int:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        try:
            return cli.main(argv)
        except SystemExit as exc:  # argparse's usage errors
            return exc.code if isinstance(exc.code, int) else 1
    # Called from an async test: cli.main runs a loop of its own, so it gets a thread, and the test's loop
    # waits for it as it waited for the subprocess.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_main, argv).result()


def _in_process(cfg: Path, args: tuple[str, ...], stdin: str | None) -> subprocess.CompletedProcess:
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_stdin = os.environ.get(config_mod.ENV_VAR), sys.stdin
    os.environ[config_mod.ENV_VAR] = str(cfg)
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = _main(list(args))
    finally:
        sys.stdin = saved_stdin
        if saved_env is None:
            os.environ.pop(config_mod.ENV_VAR, None)
        else:
            os.environ[config_mod.ENV_VAR] = saved_env
    return subprocess.CompletedProcess(["postroom", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture
def cfg(tmp_path, storage_url):
    c = tmp_path / "postroom.toml"
    c.write_text(f'[server]\ndata_dir = "{tmp_path}/data"\nhostname = "mail.city.test"\n'
                 f'[storage]\nurl = "{storage_url}"\n')
    return c


def ready_with_user(cfg: Path, address: str = "wang@city.test", password: str = "pw", *,
                    role: Role = Role.USER, department: tuple[str, str] | None = None) -> None:
    """`postroom init`, the domain, a department (code, name) if given and one account, made in this process:
    the set-up of tests about other commands (test_admin_cli.py and test_admin_cli_directory.py run init,
    `domain add`, `department add` and `user add` themselves in a subprocess)."""
    assert cli.main(["--config", str(cfg), "init"]) == 0

    async def add() -> None:
        mb = await open_mailboxes(config_mod.load(cfg).storage(), hasher=FAST_HASHER)
        try:
            await mb.directory.add_domain(address.rsplit("@", 1)[1])
            if department:
                await mb.directory.add_department(*department)
            await mb.add_account(address, password=password, role=role,
                                 department=department[0] if department else None)
        finally:
            await mb.close()

    asyncio.run(add())


MBOX = b"""From alice@city.test Mon Nov  2 10:00:00 2026
From: Alice <alice@city.test>
To: wang@city.test
Subject: first
Status: RO

Hello.
>From here the body has a quoted From line.
From the middle of a line is fine.

From bob@city.test Tue Nov  3 11:00:00 2026
From: Bob <bob@city.test>
To: wang@city.test
Subject: =?GB2312?B?udjT2rXnxNQ=?=
Content-Type: text/plain; charset=GB2312
Content-Transfer-Encoding: 8bit

\xc7\xeb\xb8\xf7\xb2\xbf\xc3\xc5\xb1\xa8\xcb\xcd\xb2\xc4\xc1\xcf\xa1\xa3

From carol@city.test Wed Nov  4 12:00:00 2026
From: carol@city.test
Subject: third

>>From double quoted
last line
"""
