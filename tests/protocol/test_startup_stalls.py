"""Start-up does not stall the event loop: nothing is imported on the watched loop, and `postroom serve` logs no import stall."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from .smtp.support import wait_for
from .test_workers import ROOT, Server, free_port

STALL_LINE = re.compile(r"event loop stalled (\d+) ms by .*\((.*)\)$", re.M)
GENEROUS_MS = 1500  # a liveness bound only: the import this guards against took 150-500 ms

# In a fresh interpreter (a test process has imported everything already): what start_all imports
# once the composition root has its starters, i.e. while the watchdog watches the loop.
PROBE = """
import asyncio, json, sys
from mailserver import app, config as config_mod

async def main():
    ctx = await app.build_context(config_mod.load(sys.argv[1]), None)
    app.starters()
    before = set(sys.modules)
    services = await app.start_all(ctx)
    new = sorted(set(sys.modules) - before)
    await app.stop_all(services)
    await ctx.mailboxes.close()
    print(json.dumps(new))

asyncio.run(main())
"""


def _with_webmail(srv: Server) -> None:
    text = srv.cfg.read_text(encoding="utf-8").replace('http = ""', f'http = "127.0.0.1:{free_port()}"')
    srv.cfg.write_text(text, encoding="utf-8")


@pytest.mark.slow
async def test_starting_the_services_imports_no_module_on_the_watched_loop(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    _with_webmail(srv)
    mb = await srv.init([])
    await mb.close()
    out = subprocess.run([sys.executable, "-c", PROBE, str(srv.cfg)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    imported = json.loads(out.strip().splitlines()[-1])
    # The webmail (aiohttp, Jinja) used to be imported here: 150-250 ms the watchdog logged at every start.
    assert [m for m in imported if not m.startswith("encodings.")] == []


@pytest.mark.slow
async def test_serve_logs_no_start_up_stall_from_an_import_or_the_templates(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    _with_webmail(srv)
    mb = await srv.init([])
    await mb.close()
    # One process (two workers cannot both bind [listen] http yet: workers.LISTENERS leaves it out).
    srv.proc = await srv.command("serve", "--workers", "1", log=True)
    await wait_for(lambda: "postroom serving:" in srv.log_since(0), timeout=60, what="the server to serve")
    assert await srv.stop() == 0
    log = srv.log.read_text(errors="replace")
    assert ("postroom serving: watchdog, audit-anchor, queue, webhooks, events, reminders, retention, smtp, imap, webmail"
            in log), log
    stalls = [(int(ms), where) for ms, where in STALL_LINE.findall(log)]
    # The watchdog names the frame that held the loop; "<module>" of a .py file is an import on the loop.
    assert [s for s in stalls if s[1].endswith("<module>") and ".py:" in s[1]] == [], stalls
    # The webmail's templates are compiled in a thread (webmail.app.compile_templates): compiling them in
    # make_app held the loop 250-390 ms at every start ("webmail/app.py:.. make_app", or a template's
    # compiled code, "templates/x.html:0 <module>").
    assert [s for s in stalls if "make_app" in s[1] or ".html:" in s[1]] == [], stalls
    assert [s for s in stalls if s[0] >= GENEROUS_MS] == [], stalls
