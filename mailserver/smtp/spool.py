"""DATA as it arrives: dot-unstuffed incrementally, kept in memory up to a threshold and in a temporary file beyond it.

RFC 5321 §4.5.2: a line that starts with "." had one more "." put in front by the
client; CRLF.CRLF ends the data. The reader below sees the stream in any chunking
and gives the same bytes (a test feeds random cuts). Memory per session is at most
IN_MEMORY plus one read chunk, however big the message; the size limit is applied
while reading, and what is over it is thrown away as it comes.
"""

from __future__ import annotations

import tempfile

IN_MEMORY = 256 * 1024  # octets of DATA a session keeps in memory; the rest goes to a temporary file
TERMINATOR = b"\r\n.\r\n"


class Spool:
    """A message body being received: bytes in memory, then in an unnamed temporary file."""

    def __init__(self, in_memory: int = IN_MEMORY) -> None:
        self.in_memory = in_memory
        self.size = 0
        self._mem = bytearray()
        self._file = None

    @property
    def on_disk(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self._file is None and len(self._mem) + len(data) <= self.in_memory:
            self._mem += data
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="postroom-data-")
            self._file.write(self._mem)
            self._mem = bytearray()
        self._file.write(data)

    def getvalue(self) -> bytes:
        """All of it (a blocking read when on disk: call it off the loop for a large spool)."""
        if self._file is None:
            return bytes(self._mem)
        self._file.seek(0)
        return self._file.read()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = bytearray()


class DataReader:
    """Feed raw DATA chunks; collects the unstuffed message into a Spool up to `limit` octets.

    `feed` returns None while the terminator has not been seen, else the bytes that
    followed it (pipelined commands, RFC 2920). `too_big` is set once the message
    passed `limit`; from then on nothing more is kept.
    """

    def __init__(self, limit: int, spool: Spool) -> None:
        self.limit = limit
        self.spool = spool
        self.too_big = False
        self._buf = bytearray(b"\r\n")  # the CRLF that ended the DATA command: ".\r\n" is an empty message
        self._first = True

    def _emit(self, chunk: bytes) -> None:
        out = chunk.replace(b"\r\n.", b"\r\n")  # RFC 5321 §4.5.2 transparency
        if self._first:
            out, self._first = out[2:], False
        if self.too_big:
            return
        if self.spool.size + len(out) > self.limit:
            self.too_big = True
            self.spool.close()
            return
        self.spool.write(out)

    def feed(self, data: bytes) -> bytes | None:
        buf = self._buf
        search_from = max(0, len(buf) - 4)
        buf += data
        end = buf.find(TERMINATOR, search_from)
        if end >= 0:
            rest = bytes(buf[end + 5:])
            self._emit(bytes(buf[:end + 2]))
            self._buf = bytearray()
            return rest
        # Keep the tail that may hold the start of the terminator or of a stuffed "\r\n.".
        cut = max(0, len(buf) - 4)
        if buf[cut - 2:cut] == b"\r\n" and cut >= 2:
            cut -= 2
        elif buf[cut - 1:cut] == b"\r" and cut >= 1:
            cut -= 1
        if cut <= 2 and self._first:
            return None  # keep the leading CRLF with what follows it
        self._emit(bytes(buf[:cut]))
        del buf[:cut]
        return None
