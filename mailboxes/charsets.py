"""Turning the bytes of mail into text: charsets (CJK first), transfer encodings, RFC 2047 words, RFC 2231 values and HTML."""

from __future__ import annotations

import binascii
import codecs
import html.parser
import re
from functools import lru_cache

__all__ = [
    "codec_for",
    "decode_text",
    "decode_header_value",
    "decode_rfc2231_value",
    "decode_transfer",
    "html_charset",
    "html_to_text",
    "raw_bytes",
]

# Labels that mean "unknown" or "7-bit": decoding falls through to the guessing chain.
_UNLABELLED = frozenset({"", "us-ascii", "ascii", "us", "ansi_x3.4-1968", "unknown-8bit",
                         "x-unknown", "unknown", "default", "none", "x-user-defined"})

# Declared label -> codec we decode with. GB2312 and GBK mail routinely holds characters
# outside those sets, so both decode as GB18030, their superset (same for the aliases).
_ALIASES = {
    **dict.fromkeys(("gb2312", "gbk", "cp936", "ms936", "windows-936", "x-gbk", "euc-cn",
                     "euccn", "x-euc-cn", "gb_2312-80", "gb2312-80", "csgb2312", "x-gb2312",
                     "chinese", "iso-ir-58", "csiso58gb231280", "gb18030", "gb-18030"), "gb18030"),
    # Big5 as sent by Windows is CP950 (Big5 plus Microsoft's additions); HKSCS is the fallback.
    **dict.fromkeys(("big5", "big-5", "x-big5", "cn-big5", "csbig5", "x-x-big5", "cp950",
                     "ms950", "windows-950"), "cp950"),
    **dict.fromkeys(("big5-hkscs", "big5hkscs", "x-big5-hkscs"), "big5hkscs"),
    **dict.fromkeys(("ks_c_5601-1987", "ks_c_5601", "korean", "euc-kr", "cp949"), "cp949"),
    **dict.fromkeys(("shift_jis", "shift-jis", "sjis", "x-sjis", "windows-31j", "ms932"), "cp932"),
    # As browsers do (WHATWG), Latin-1 labels decode as Windows-1252.
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "latin1", "latin-1", "l1"), "cp1252"),
    **dict.fromkeys(("utf8", "utf-8", "x-utf8", "unicode-1-1-utf-8"), "utf-8"),
}

# When the declared codec refuses the bytes, these are tried before guessing.
_ALTERNATES = {
    "gb18030": ("gbk",),
    "cp950": ("big5hkscs", "gb18030"),
    "big5hkscs": ("cp950",),
    "cp1252": ("latin-1",),
    "cp949": ("euc_kr",),
}

# Codecs whose text is 7-bit on the wire; the ASCII shortcut must not bypass them.
_SEVEN_BIT_CODECS = frozenset({"utf-7", "hz", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2",
                               "iso2022_jp_2004", "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr"})

# Share of U+FFFD a GB18030 guess may contain before Latin-1 is preferred.
_GUESS_MAX_REPLACED = 0.01


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when the label is absent or unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = name.split("*", 1)[0]  # RFC 2231 §5: charset*language
    if name in _UNLABELLED:
        return None
    name = _ALIASES.get(name, name)
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _try(data: bytes, codec: str, final: bool) -> str | None:
    try:
        if final:
            return data.decode(codec)
        return codecs.getincrementaldecoder(codec)().decode(data, final=False)
    except (UnicodeDecodeError, LookupError):
        return None


def decode_text(data: bytes, charset: str | None = None, fallback: str | None = None,
                *, final: bool = True) -> str:
    """Decode body or header bytes: declared charset, then UTF-8, the hint, GB18030, Latin-1.

    `fallback` is a codec hint (e.g. the charset of the message's text parts) for unlabelled
    8-bit bytes. `final=False` means `data` was cut short, so a trailing partial character
    is dropped instead of failing the decode. Never raises.
    """
    codec = codec_for(charset)
    if data.isascii() and codec not in _SEVEN_BIT_CODECS:
        return data.decode("ascii")
    if codec is not None:
        for name in (codec, *_ALTERNATES.get(codec, ())):
            text = _try(data, name, final)
            if text is not None:
                return text
    for name in ("utf-8", codec_for(fallback), "gb18030"):
        if name is not None and name != codec:
            text = _try(data, name, final)
            if text is not None:
                return text
    if codec is not None:
        return data.decode(codec, "replace")
    guess = data.decode("gb18030", "replace")
    if guess.count("\ufffd") <= max(1, int(len(guess) * _GUESS_MAX_REPLACED)):
        return guess
    return data.decode("latin-1")


def raw_bytes(value: str) -> bytes:
    """The original header bytes of a value stored as UTF-8 with surrogateescape."""
    return value.encode("utf-8", "surrogateescape")


def _decode_8bit(value: str, fallback: str | None) -> str:
    """Decode 8-bit header bytes carried as surrogate escapes (unencoded GBK headers)."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")  # no surrogates: the header was valid UTF-8
        return value
    except UnicodeEncodeError:
        return decode_text(raw_bytes(value), None, fallback)


# RFC 2047 §2: encoded-word = "=?" charset "?" encoding "?" encoded-text "?="
# Tolerant: no whitespace needed around words, empty text allowed, charset may carry *lang.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")
_B64_CHUNK = re.compile(rb"[A-Za-z0-9+/]+=*")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/=]+")


def _b64decode(data: bytes) -> bytes:
    """Base64 that survives missing padding, junk characters and per-line padded chunks."""
    pad = data.find(b"=")
    if pad < 0 or not data[pad:].strip(b"=\r\n \t"):
        try:
            return binascii.a2b_base64(data)
        except (binascii.Error, ValueError):
            pass
    out = []
    for chunk in _B64_CHUNK.findall(_B64_JUNK.sub(b"", data)):
        chunk = chunk.rstrip(b"=")
        cut = len(chunk) % 4
        if cut == 1:
            chunk = chunk[:-1]
        elif cut:
            chunk += b"=" * (4 - cut)
        if chunk:
            out.append(binascii.a2b_base64(chunk))
    return b"".join(out)


def _qdecode(text: bytes) -> bytes:
    # RFC 2047 §4.2: "_" is space, =XX is an octet; stray "=" is kept as is.
    return _Q_HEX.sub(lambda m: bytes((int(m.group(1), 16),)), text.replace(b"_", b" "))


def decode_header_value(value: str | bytes | None, fallback: str | None = None) -> str:
    """Decode an unfolded header value: RFC 2047 words in any charset plus raw 8-bit text.

    Adjacent encoded words in the same charset are joined as bytes before decoding, so a
    GBK character split across two words (a common Chinese-client bug) comes out whole;
    whitespace between encoded words is dropped (RFC 2047 §6.2). Never raises.
    """
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("utf-8", "surrogateescape")
    if "=?" not in value:
        return _decode_8bit(value, fallback)
    out: list[str] = []
    run_charset: str | None = None
    run: list[bytes] = []
    pos = 0

    def flush() -> None:
        if run:
            out.append(decode_text(b"".join(run), run_charset, fallback))
            run.clear()

    for m in _ENCODED_WORD.finditer(value):
        between = value[pos:m.start()]
        if between and (not run or between.strip(" \t\r\n")):
            flush()
            out.append(_decode_8bit(between, fallback))
        charset, enc, text = m.group(1), m.group(2), raw_bytes(m.group(3))
        data = _b64decode(text) if enc in "bB" else _qdecode(text)
        if run and codec_for(charset) != codec_for(run_charset):
            flush()
        run_charset = charset
        run.append(data)
        pos = m.end()
    flush()
    out.append(_decode_8bit(value[pos:], fallback))
    return "".join(out)


def decode_rfc2231_value(value: str, fallback: str | None = None) -> str:
    """Decode a merged RFC 2231 extended value: charset'language'percent-encoded-octets."""
    fields = value.split("'", 2)
    charset, data = (fields[0], fields[2]) if len(fields) == 3 else (None, value)
    octets = bytearray()
    raw = raw_bytes(data)
    i = 0
    while i < len(raw):  # RFC 2231 §4: "%" 2HEXDIG; a broken escape stays literal
        c = raw[i]
        if c == 0x25 and _is_hex(raw[i + 1:i + 3]):
            octets.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            octets.append(c)
            i += 1
    return decode_text(bytes(octets), charset, fallback)


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 §6); unknown encodings pass through."""
    if encoding == "base64":
        return _b64decode(data)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


# Elements whose content is not text, and elements that end a line of text.
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "noscript", "template"})
_BREAK_TAGS = frozenset({"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                         "table", "blockquote", "pre", "hr", "dd", "dt", "ul", "ol", "section"})


class _TextCollector(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            self.skipping += 1
        elif tag in _BREAK_TAGS:
            self.chunks.append("\n")
        elif tag == "td":
            self.chunks.append(" ")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in _BREAK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BREAK_TAGS:
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.chunks.append(data)


_SPACES = re.compile(r"[ \t\r\f\v\xa0\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def html_to_text(markup: str) -> str:
    """Visible text of an HTML body, for the search index (script and style skipped)."""
    collector = _TextCollector()
    try:
        collector.feed(markup)
        collector.close()
    except Exception:  # html.parser is lenient; keep what was collected if it still gives up
        pass
    text = _SPACES.sub(" ", "".join(collector.chunks))
    return _BLANK_LINES.sub("\n", text).strip()


_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]{1,40})""", re.I)


def html_charset(data: bytes) -> str | None:
    """The charset an HTML document declares in a <meta> tag near its start, if any."""
    m = _META_CHARSET.search(data, 0, 4096)
    return m.group(1).decode("ascii") if m else None
