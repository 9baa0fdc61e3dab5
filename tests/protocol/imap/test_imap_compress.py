"""COMPRESS=DEFLATE (RFC 4978): a transcript through a raw DEFLATE client, pipelining, corrupt and oversized input."""

from __future__ import annotations

import re
import socket
import zlib

from .harness import PASSWORD, Raw, message


class Deflated:
    """A raw client that turns on COMPRESS DEFLATE after logging in (RFC 4978 §3)."""

    def __init__(self, port: int, user: str = "alice@city.test", *, then: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.pending = b""  # octets read in the plain phase, not yet used
        self._plain_line()
        self.sock.sendall(b"L LOGIN %s %s\r\n" % (user.encode(), PASSWORD.encode()))
        while not self._plain_line().startswith(b"L OK"):
            pass
        self.out = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.inflate = zlib.decompressobj(-15)
        # What follows COMPRESS in the same packet is already compressed (the client pipelines).
        self.sock.sendall(b"Z COMPRESS DEFLATE\r\n" + (self._pack(then) if then else b""))
        self.ok = self._plain_line()
        self.buf = bytearray(self.inflate.decompress(self.pending))  # the server's first compressed octets
        self.wire_in = 0

    def _plain_line(self) -> bytes:
        while b"\n" not in self.pending:
            self.pending += self.sock.recv(65536)
        i = self.pending.index(b"\n") + 1
        line, self.pending = self.pending[:i], self.pending[i:]
        return line

    def _pack(self, data: bytes) -> bytes:
        return self.out.compress(data) + self.out.flush(zlib.Z_SYNC_FLUSH)

    def send(self, data: bytes) -> None:
        self.sock.sendall(self._pack(data))

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(bytes(self.buf))
            self.wire_in += len(chunk)
            self.buf += self.inflate.decompress(chunk)
        i = self.buf.index(b"\n") + 1
        line = bytes(self.buf[:i])
        del self.buf[:i]
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            self.wire_in += len(chunk)
            self.buf += self.inflate.decompress(chunk)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def until(self, tag: bytes) -> tuple[list[bytes], bytes]:
        out = []
        while True:
            line = self.line()
            while (m := re.search(rb"\{(\d+)\}\r\n$", line)) is not None:
                line += self.exact(int(m.group(1))) + self.line()
            if line.startswith(tag + b" "):
                return out, line
            out.append(line)

    def cmd(self, command: bytes) -> tuple[list[bytes], bytes]:
        self.send(command + b"\r\n")
        return self.until(command.split(b" ", 1)[0])

    def close(self) -> None:
        self.sock.close()


def test_capability_and_transcript(server):
    c = Raw(server.port, login="alice@city.test")
    untagged, _ = c.cmd(b"c1 CAPABILITY")
    assert b" COMPRESS=DEFLATE" in untagged[0]
    # Before login COMPRESS is not available (RFC 4978 §3: authenticated or selected state).
    pre = Raw(server.port)
    assert pre.cmd(b"p1 COMPRESS DEFLATE")[1].startswith(b"p1 BAD")
    pre.close()
    assert c.cmd(b"c2 COMPRESS LZW")[1].startswith(b"c2 BAD")
    c.close()
    server.deliver("alice", message("压缩测试", "正文 body text"))
    z = Deflated(server.port)
    try:
        assert z.ok == b"Z OK DEFLATE active\r\n"
        untagged, tagged = z.cmd(b"a1 SELECT INBOX")
        assert tagged.startswith(b"a1 OK [READ-WRITE]") and b"* 1 EXISTS\r\n" in untagged
        untagged, tagged = z.cmd(b"a2 FETCH 1 (BODY.PEEK[TEXT])")
        body = "正文 body text\r\n".encode()
        assert untagged == [b"* 1 FETCH (BODY[TEXT] {%d}\r\n%s)\r\n" % (len(body), body)]
        # A second COMPRESS: NO [COMPRESSIONACTIVE] (RFC 4978 §3), the session goes on compressed.
        assert z.cmd(b"a3 COMPRESS DEFLATE")[1].startswith(b"a3 NO [COMPRESSIONACTIVE]")
        assert z.cmd(b"a4 NOOP")[1] == b"a4 OK NOOP completed\r\n"
        z.send(b"a5 LOGOUT\r\n")
        assert z.line().startswith(b"* BYE")
    finally:
        z.close()


def test_commands_pipelined_behind_compress_are_inflated(server):
    z = Deflated(server.port, then=b"b1 NOOP\r\nb2 SELECT INBOX\r\n")
    try:
        assert z.ok.startswith(b"Z OK")
        assert z.until(b"b1")[1].startswith(b"b1 OK")
        assert z.until(b"b2")[1].startswith(b"b2 OK")
    finally:
        z.close()


def test_corrupt_stream_ends_only_that_session(server):
    z = Deflated(server.port)
    z.sock.sendall(b"\xff" * 64)  # not a DEFLATE block
    data = b""
    while chunk := z.sock.recv(65536):
        data += chunk
    assert z.inflate.decompress(data).startswith(b"* BYE")
    z.close()
    other = Raw(server.port, login="alice@city.test")
    assert other.cmd(b"o1 NOOP")[1].startswith(b"o1 OK")
    other.close()


def test_a_compression_bomb_is_bounded_by_the_line_limit(server):
    z = Deflated(server.port)
    try:
        # 64 MiB of one octet is 64 KiB compressed: the server inflates it chunk by chunk
        # and the parser refuses the overlong line; nothing of it is held at once.
        z.sock.sendall(z.out.compress(b"x NOOP " + b"a" * (64 << 20) + b"\r\n") + z.out.flush(zlib.Z_SYNC_FLUSH))
        tagged = z.line()
        assert b"BAD" in tagged, tagged
        assert z.cmd(b"n1 NOOP")[1].startswith(b"n1 OK")
    finally:
        z.close()


def test_headers_sync_is_smaller_compressed(server):
    msgs = [message(f"季度报告 {i} Quarterly report", f"body {i}", msgid=f"cz{i}") for i in range(200)]
    server.run(server.deliver_many("alice", msgs))
    fetch = b"f1 UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT DATE MESSAGE-ID)])"
    plain = Raw(server.port, login="alice@city.test")
    plain.cmd(b"s SELECT INBOX")
    untagged, tagged = plain.cmd(fetch)
    plain.close()
    raw_size = sum(map(len, untagged)) + len(tagged)
    z = Deflated(server.port)
    try:
        z.cmd(b"s SELECT INBOX")
        before = z.wire_in
        zu, zt = z.cmd(fetch)
        assert zu == untagged and zt == tagged  # the same responses, octet for octet
        assert (z.wire_in - before) * 3 < raw_size, (z.wire_in - before, raw_size)
    finally:
        z.close()
