"""Sans-I/O IMAP4rev1 command parser: client bytes in any chunking go in, typed events come out (h11 style).

Implementation notes
- A generator reads the stream (``_read_line`` / ``_read_exact`` yield when they need more
  bytes, as python-websockets does). A command is collected fragment by fragment: a line
  ending in ``{n}`` / ``{n+}`` / ``~{n}`` announces a literal, whose bytes are read exactly and
  set aside; the command text is then parsed once by :mod:`.command_syntax`, literals being taken
  from the side table, so a literal never causes re-parsing from byte 0.
- The parser never reads ahead of the event it returns: after a ``Command`` the server may
  call :meth:`CommandParser.expect_line` (AUTHENTICATE, IDLE's DONE) before asking for more.
- Resynchronisation (RFC 3501 §7.5): before answering a synchronising literal with
  ``NeedContinuation`` the tag and command name are checked; if they are bad the parser emits
  ``ParseError`` and expects the next command on the next line (the client, answered BAD
  instead of "+", does not send the literal). A bad non-synchronising literal (LITERAL+,
  RFC 7888) is skipped unread, then the rest of the command. A syntax error found once the
  whole command is in has nothing left to skip. An over-long line is discarded up to its LF;
  if it ended by announcing a non-synchronising literal, that literal and the rest of the
  command are discarded too.
- Limits: ``max_line`` bounds the text of one command (all its lines, CRLFs and literals
  excluded), ``max_literal`` the literal octets of one command. Exceeding one yields
  ``LimitExceeded``; what is over a limit is dropped as it arrives, never buffered whole.
- After STARTTLS the server should build a fresh parser, and refuse the upgrade if
  ``buffered`` is non-zero (plaintext injected behind STARTTLS, RFC 3501 §6.2.1 / CVE-2011-0411).
- Only events come out: no exception escapes ``receive_data`` / ``next_event`` for any input.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Literal

from .command_syntax import parse_command, parse_prefix
from .commands import Command
from .syntax import BadCharsetError, SyntaxErr

__all__ = [
    "NEED_DATA", "BadCharset", "Command", "CommandParser", "ConnectionClosed", "ContinuationLine",
    "Event", "LimitExceeded", "NeedContinuation", "ParseError",
]  # fmt: skip


# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class NeedContinuation:
    """A synchronising literal was announced: send ``+ Ready`` (or call ``reject_literal`` and answer)."""

    tag: str
    command: str
    size: int


@dataclass(frozen=True, slots=True)
class ContinuationLine:
    """The raw line (no CRLF) requested with ``expect_line``: a SASL response, ``*``, or IDLE's ``DONE``."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ParseError:
    """Bad syntax or unknown command: answer ``tag BAD message`` (``* BAD`` when ``tag`` is None)."""

    tag: str | None
    message: str


@dataclass(frozen=True, slots=True)
class BadCharset:
    """SEARCH named a charset we do not support: RFC 3501 §6.4.4 wants ``NO [BADCHARSET (...)]``, not BAD."""

    tag: str
    charset: str


@dataclass(frozen=True, slots=True)
class LimitExceeded:
    """A command line or literal was over its limit and is being discarded.

    Answer BAD (or ``NO [TOOBIG]`` for an APPEND literal, RFC 7889 / RFC 4469) or close. For a
    literal, ``synchronizing`` tells whether the client is still waiting for "+" (it will send
    nothing more of the command) or is sending the bytes anyway (the parser skips them).
    """

    tag: str | None
    command: str | None
    kind: Literal["line", "literal"]
    size: int | None
    limit: int
    synchronizing: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """End of stream; ``incomplete`` if it cut a command short. Repeated forever after."""

    incomplete: bool = False


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()
Event = Command | NeedContinuation | ContinuationLine | ParseError | BadCharset | LimitExceeded | ConnectionClosed

# A line that announces a literal ends with it (RFC 3501 §4.3, RFC 7888 §3, RFC 3516 §4.2).
_LITERAL_AT_END = re.compile(rb"(~?)\{([0-9]{1,20})(\+?)\}\Z")
_BLANK_LINES = re.compile(rb"(?:\r?\n)+")
_TAG_SNIFF = re.compile(rb"([^\x00-\x20\x7f-\xff(){%*\"\\+]+) ")
_TAIL = 32


class _EndOfStream(Exception):
    pass


_TOO_LONG = object()
_Reader = Generator[Event | None, None, object]


class CommandParser:
    """Turn client bytes into events; set ``utf8_names`` once UTF8=ACCEPT is enabled (RFC 6855 §3)."""

    def __init__(self, max_line: int = 65536, max_literal: int = 64 * 1024 * 1024, *, utf8_names: bool = False):
        self.max_line = max_line  # octets of command text, literals excluded
        self.max_literal = max_literal  # literal octets per command
        self.utf8_names = utf8_names
        self._buf = bytearray()
        self._eof = False
        self._expect_line = False
        self._in_command = False
        self._awaiting_continuation = False
        self._reject = False
        self._gen = self._run()

    # -- public API ------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` means end of stream."""
        if not data:
            self._eof = True
        elif self._eof:
            raise RuntimeError("receive_data() after end of stream")
        else:
            self._buf += data

    def next_event(self) -> Event | _NeedData:
        """The next event, or NEED_DATA when more bytes are needed."""
        event = next(self._gen)
        return NEED_DATA if event is None else event

    def events(self) -> Iterator[Event]:
        """Iterate events until NEED_DATA (or ConnectionClosed)."""
        while True:
            event = self.next_event()
            if event is NEED_DATA:
                return
            yield event  # type: ignore[misc]
            if isinstance(event, ConnectionClosed):
                return

    def expect_line(self) -> None:
        """Make the next event a ContinuationLine (AUTHENTICATE exchange, IDLE's DONE)."""
        if self._in_command:
            raise RuntimeError("expect_line() in the middle of a command")
        self._expect_line = True

    def reject_literal(self) -> None:
        """Refuse the literal just announced by NeedContinuation: the client sends nothing more of it."""
        if not self._awaiting_continuation:
            raise RuntimeError("reject_literal() without a pending NeedContinuation")
        self._reject = True

    def take_buffered(self) -> bytes:
        """Remove and return the octets received but not parsed (between commands only).

        After COMPRESS (RFC 4978 §3) what follows the command is compressed: the wire
        takes it back to inflate it before it is parsed.
        """
        if self._in_command:
            raise RuntimeError("take_buffered() in the middle of a command")
        data = bytes(self._buf)
        del self._buf[:]
        return data

    @property
    def buffered(self) -> int:
        """Octets received but not yet parsed (e.g. to refuse pipelining before STARTTLS, RFC 3501 §6.2.1)."""
        return len(self._buf)

    # -- the reader generator -----------------------------------------------------------

    def _run(self) -> _Reader:
        try:
            while True:
                if self._expect_line:
                    self._expect_line = False
                    yield from self._read_continuation_line()
                else:
                    yield from self._read_command()
        except _EndOfStream:
            pass
        closed = ConnectionClosed(incomplete=self._in_command or bool(self._buf))
        while True:
            yield closed

    def _read_line(self, limit: int) -> _Reader:
        """One line without CRLF (a bare LF is tolerated), or _TOO_LONG if over ``limit`` (left unread)."""
        buf = self._buf
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i >= 0:
                if i > limit:
                    return _TOO_LONG
                line = bytes(buf[:i])
                del buf[: i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(buf) > limit:
                return _TOO_LONG
            if self._eof:
                raise _EndOfStream
            start = len(buf)
            yield None

    def _read_exact(self, n: int) -> _Reader:
        buf = self._buf
        while len(buf) < n:
            if self._eof:
                raise _EndOfStream
            yield None
        with memoryview(buf) as view:
            data = bytes(view[:n])
        del buf[:n]
        return data

    def _skip_exact(self, n: int) -> _Reader:
        buf = self._buf
        while True:
            take = min(n, len(buf))
            del buf[:take]
            n -= take
            if not n:
                return None
            if self._eof:
                raise _EndOfStream
            yield None

    def _skip_line(self) -> _Reader:
        """Discard up to and including the next LF; return the line's last octets (CR removed)."""
        buf = self._buf
        tail = b""
        while True:
            i = buf.find(b"\n")
            if i >= 0:
                tail = (tail + bytes(buf[max(0, i - _TAIL) : i]))[-_TAIL:]
                del buf[: i + 1]
                return tail[:-1] if tail.endswith(b"\r") else tail
            if self._eof:
                raise _EndOfStream
            tail = (tail + bytes(buf[-_TAIL:]))[-_TAIL:]
            buf.clear()
            yield None

    def _skip_rest(self, tail: bytes) -> _Reader:
        """After a skipped line: skip announced non-synchronising literals and the lines after them."""
        while (m := _LITERAL_AT_END.search(tail)) and m.group(3):
            yield from self._skip_exact(int(m.group(2)))
            tail = yield from self._skip_line()
        return None

    def _read_continuation_line(self) -> _Reader:
        line = yield from self._read_line(self.max_line)
        if line is _TOO_LONG:
            yield LimitExceeded(None, None, "line", None, self.max_line)
            yield from self._skip_line()
        else:
            yield ContinuationLine(line)  # type: ignore[arg-type]

    def _read_command(self) -> _Reader:
        fragments: list[bytes] = []
        literals: dict[int, tuple[bytes, bool]] = {}
        text_len = literal_total = 0  # text_len: octets of the command's lines, CRLFs and literals excluded
        prefix: tuple[str | None, str | None, str | None] | None = None  # tag, name, error
        while True:
            if not fragments and (blank := _BLANK_LINES.match(self._buf)):
                del self._buf[: blank.end()]  # blank lines between commands, skipped at once (not line by line)
            room = self.max_line - text_len
            line = yield from self._read_line(room)
            if line is _TOO_LONG:
                if prefix is None and fragments:
                    prefix = parse_prefix(fragments[0])
                tag = prefix[0] if prefix else _sniff_tag(bytes(self._buf[: min(room + 1, 128)]))
                yield LimitExceeded(tag, prefix[1] if prefix else None, "line", None, self.max_line)
                self._in_command = True
                tail = yield from self._skip_line()
                yield from self._skip_rest(tail)
                self._in_command = False
                return None
            assert isinstance(line, bytes)
            if not fragments and not line:
                continue  # blank lines between commands are ignored
            self._in_command = True
            fragments.append(line)
            text_len += len(line)
            m = _LITERAL_AT_END.search(line) if line.endswith(b"}") else None
            if m is None:
                break
            size, sync = int(m.group(2)), not m.group(3)
            if prefix is None:
                prefix = parse_prefix(fragments[0])
            tag, name, error = prefix
            if error is not None or size > self.max_literal - literal_total:
                if error is not None:
                    yield ParseError(tag, error)
                else:
                    yield LimitExceeded(tag, name, "literal", size, self.max_literal, sync)
                if not sync:
                    yield from self._skip_exact(size)
                    tail = yield from self._skip_line()
                    yield from self._skip_rest(tail)
                self._in_command = False
                return None
            if sync:  # RFC 3501 §7.5: the client waits for "+" before sending the literal
                self._awaiting_continuation = True
                yield NeedContinuation(tag or "", name or "", size)
                self._awaiting_continuation = False
                if self._reject:
                    self._reject = self._in_command = False
                    return None
            data = yield from self._read_exact(size)
            # keyed by its offset just past "}" in the text joined below
            literals[text_len + len(fragments) - 1] = (data, bool(m.group(1)))
            literal_total += size
        self._in_command = False
        # "\n" separates fragments: no token can span it, and a literal resumes just past it.
        text = b"\n".join(fragments)
        try:
            tag, body = parse_command(text, literals, utf8_names=self.utf8_names)
        except BadCharsetError as exc:
            yield BadCharset(exc.tag, exc.charset)
        except SyntaxErr as exc:
            yield ParseError(exc.tag, str(exc))
        else:
            yield Command(tag, body)
        return None


def _sniff_tag(head: bytes) -> str | None:
    m = _TAG_SNIFF.match(head)
    return m.group(1).decode("ascii") if m else None
