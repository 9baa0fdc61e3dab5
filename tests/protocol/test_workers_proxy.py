"""PROXY protocol under `postroom serve --workers 2`: the sockets the supervisor bound carry the trust to both workers.

The balancer is the test, connecting from 127.0.0.2 (the only trusted source) and
writing a v1 or v2 header; a client from 127.0.0.1 is not trusted, so its header is
just bytes the protocol refuses. Which worker served a connection, and which client
address it saw, is read off the server's log (`[worker I pid P]` on every line).
"""

from __future__ import annotations

import asyncio
import re
import socket

import pytest

from tests.unit.test_proxyproto import v2

from .smtp.support import PASSWORD, wait_for
from .test_workers import Server

pytestmark = pytest.mark.slow

BALANCER = "127.0.0.2"
MAX_CONNECTIONS = 60  # per protocol and header version, until both workers have taken one
SMTP_LINE = re.compile(r"\[worker (\d+) pid \d+\] smtp queue_id=\S+ listener=smtp client=(\S+) helo=(\S+) ")
IMAP_LINE = re.compile(r"\[worker (\d+) pid \d+\] imap session=\S+ listener=imap ip=(\S+) ")


def header(version: str, client: str, dport: int) -> bytes:
    if version == "v1":
        return f"PROXY TCP4 {client} 192.0.2.1 40000 {dport}\r\n".encode()
    return v2(client, "192.0.2.1", 40000, dport)


async def connect(port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def smtp_through(port: int, hdr: bytes, helo: str) -> None:
    r, w = await connect(port, BALANCER)
    w.write(hdr)
    assert (await r.readline()).startswith(b"220 ")
    for line, code in ((f"HELO {helo}", b"250"), ("MAIL FROM:<a@outside.example>", b"250"),
                       ("RCPT TO:<ann@city.test>", b"250"), ("DATA", b"354"),
                       (f"Subject: {helo}\r\n\r\nvia the balancer\r\n.", b"250"), ("QUIT", b"221")):
        w.write(line.encode() + b"\r\n")
        reply = await r.readline()
        while reply[3:4] == b"-":
            reply = await r.readline()
        assert reply.startswith(code), (line, reply)
    w.close()


async def imap_through(port: int, hdr: bytes) -> None:
    r, w = await connect(port, BALANCER)
    w.write(hdr)
    assert (await r.readline()).startswith(b"* OK")
    w.write(f'a LOGIN ann@city.test "{PASSWORD}"\r\n'.encode())
    while not (line := await r.readline()).startswith(b"a "):
        pass
    # The session's peer is the proxied client, not loopback: no plaintext login (RFC 3501 §6.2.3, LOGINDISABLED
    # is lifted only on loopback here), which also shows the trust did not leak to the client's address.
    assert line == b"a NO [PRIVACYREQUIRED] Log in over TLS (STARTTLS) first\r\n", line
    w.write(b"b LOGOUT\r\n")
    await r.read()
    w.close()


async def test_proxy_headers_reach_both_workers_and_an_untrusted_header_is_refused(tmp_path):
    srv = Server(tmp_path, f"sqlite:///{tmp_path}/data/postroom.db")
    srv.cfg.write_text(srv.cfg.read_text().replace('http = ""\n', f'http = ""\nproxy_trusted = ["{BALANCER}/32"]\n'))
    mb = await srv.init(["ann@city.test"])
    await mb.close()
    await srv.start(workers=2)
    try:
        for version in ("v1", "v2"):
            seen: dict[str, str] = {}  # client address -> worker slot that logged it
            for i in range(MAX_CONNECTIONS):
                client = f"203.0.113.{i + 1}" if version == "v1" else f"198.51.100.{i + 1}"
                await smtp_through(srv.ports["smtp"], header(version, client, 25), f"s{version}-{i}.example")
                await imap_through(srv.ports["imap"], header(version, client, 143))
                await wait_for(lambda: client in [m[2] for m in IMAP_LINE.finditer(srv.log_since(0))]
                               and f"s{version}-{i}.example" in srv.log_since(0), timeout=30,
                               what="the server to log the session")
                log = srv.log_since(0)
                smtp = {m[3]: (m[1], m[2]) for m in SMTP_LINE.finditer(log)}
                # The logged client is the one the header named, never the balancer.
                assert smtp[f"s{version}-{i}.example"][1].strip("[]").split(":")[0] == client, smtp
                seen.update({ip: slot for slot, ip in IMAP_LINE.findall(log)})
                slots_smtp = {slot for h, (slot, _) in smtp.items() if h.startswith(f"s{version}-")}
                slots_imap = {slot for ip, slot in seen.items() if ip.startswith(client.rsplit(".", 1)[0] + ".")}
                if slots_smtp == slots_imap == {"1", "2"}:
                    break
            else:
                pytest.fail(f"{version}: both workers never took a proxied connection ({MAX_CONNECTIONS} tries)")
        log = srv.log_since(0)
        logged = [m[2] for m in SMTP_LINE.finditer(log)] + [m[2] for m in IMAP_LINE.finditer(log)]
        assert logged and not [ip for ip in logged if BALANCER in ip], logged  # never the balancer's address
        # A PROXY header from a source not trusted is protocol bytes: SMTP 500, IMAP BAD, on whichever worker.
        for _ in range(4):
            r, w = await connect(srv.ports["smtp"], "127.0.0.1")
            assert (await r.readline()).startswith(b"220 ")
            w.write(header("v1", "203.0.113.200", 25))
            assert (await r.readline()).startswith(b"500 "), "an untrusted PROXY line is refused"
            w.close()
            r, w = await connect(srv.ports["imap"], "127.0.0.1")
            assert (await r.readline()).startswith(b"* OK")
            w.write(header("v1", "203.0.113.200", 143))
            assert (await r.readline()).split(b" ")[1] in (b"BAD",), "an untrusted PROXY line is refused"
            w.close()
        assert "203.0.113.200" not in srv.log_since(0)
    finally:
        assert await srv.stop() == 0
