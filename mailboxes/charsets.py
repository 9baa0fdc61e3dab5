"""Text out of mail bytes: charsets (CJK first), transfer encodings, RFC 2047 words, RFC 2045/2231 parameters, HTML."""

from __future__ import annotations

import binascii
import codecs
import html.parser
import re
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from .transfer import decode_qp

__all__ = [
    "MIME_TOKEN",
    "codec_for",
    "comment_end",
    "decoded_params",
    "merge_rfc2231",
    "parse_params",
    "quoted_string",
    "skip_cfws",
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

# Codecs for which ASCII-only bytes are not ASCII text (7-bit stateful ones, UTF-16/32):
# the ASCII shortcut must not bypass them.
_NOT_ASCII_CODECS = frozenset({"utf-7", "hz", "iso2022_jp", "iso2022_jp_1", "iso2022_jp_2",
                               "iso2022_jp_2004", "iso2022_jp_3", "iso2022_jp_ext", "iso2022_kr",
                               "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
                               "utf-32-be"})

# U+FFFD allowed per non-ASCII character a GB18030 guess decoded, before Latin-1 wins instead.
_GUESS_MAX_REPLACED = 0.05


@lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec for a MIME charset label, or None when the label is absent or unknown."""
    if not label:
        return None
    name = label.strip().strip("\"'").lower()
    name = name.split("*", 1)[0]  # RFC 2231 §5: charset*language
    if name in _UNLABELLED:
        return None
    if not name.isascii() or not name.isprintable():
        return None
    name = _ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # bytes.decode refuses the codecs that are not text encodings (base64, rot13, zlib)
    return info.name if getattr(info, "_is_text_encoding", True) else None


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
    if data.isascii() and codec not in _NOT_ASCII_CODECS:
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
    bad = guess.count("\ufffd")
    decoded = len(guess) - len(guess.encode("ascii", "ignore")) - bad
    if bad <= decoded * _GUESS_MAX_REPLACED:
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
    # RFC 2231 §4: "%" 2HEXDIG is an octet; a broken escape stays as it is
    return decode_text(unquote_to_bytes(raw_bytes(data)), charset, fallback)


def decode_transfer(data: bytes, encoding: str | None) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 §6); unknown encodings pass through."""
    if encoding == "base64":
        return _b64decode(data)
    if encoding == "quoted-printable":
        return decode_qp(data)
    return data


# --- RFC 2045 §5.1 parameters, RFC 2231 continuations ------------------------------

MIME_TOKEN = re.compile(r'[^\x00-\x20()<>@,;:\\"/\[\]?=\x7f]+')        # RFC 2045 §5.1 token
_RFC2231_NAME = re.compile(r"([^*]+)\*(?:(\d{1,3})(\*?))?")        # RFC 2231 §3, §4


def comment_end(s: str, i: int) -> int:
    """End of the RFC 5322 §3.2.2 comment at s[i] == "(": nested, with quoted-pairs."""
    depth, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def skip_cfws(s: str, i: int) -> int:
    """Index of the first character at or after i that is not whitespace or a comment."""
    n = len(s)
    while i < n:
        c = s[i]
        if c in " \t\r\n":
            i += 1
        elif c == "(":
            i = comment_end(s, i)
        else:
            break
    return min(i, n)


def quoted_string(s: str, i: int) -> tuple[str, int]:
    """RFC 5322 §3.2.4 quoted-string at s[i] == '"'; an unterminated one runs to the end."""
    close = s.find('"', i + 1)
    if close > 0 and "\\" not in s[i + 1:close]:
        return s[i + 1:close], close + 1
    out = []
    i += 1
    n = len(s)
    while i < n:
        c = s[i]
        if c == '"':
            return "".join(out), i + 1
        if c == "\\" and i + 1 < n:
            i += 1
            c = s[i]
        out.append(c)
        i += 1
    return "".join(out), n


def parse_params(s: str, i: int) -> tuple[tuple[str, str], ...]:
    """RFC 2045 §5.1 `*(";" parameter)`, tolerant of missing ";", junk and unquoted spaces."""
    out = []
    n = len(s)
    while i < n:
        i = skip_cfws(s, i)
        if i >= n:
            break
        if s[i] == ";":
            i += 1
            continue
        m = MIME_TOKEN.match(s, i)
        if m is None:
            j = s.find(";", i)
            if j < 0:
                break
            i = j
            continue
        name = m.group().lower()
        i = skip_cfws(s, m.end())
        if i >= n or s[i] != "=":
            continue
        i = skip_cfws(s, i + 1)
        if i < n and s[i] == '"':
            value, i = quoted_string(s, i)
        else:   # token, or the broken unquoted forms (spaces, 8-bit, "==?gbk?B?...?=")
            j = s.find(";", i)
            j = n if j < 0 else j
            value = s[i:j].strip()
            k = value.find(" (")
            if k > 0 and value.endswith(")"):
                value = value[:k].rstrip()
            i = j
        out.append((name, value))
    return merge_rfc2231(out)


def merge_rfc2231(params: list[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """RFC 2231 §3-4: join name*0, name*1* ... into one `name*` (or `name`) value, as Dovecot does.

    Segments are not decoded; unencoded segments of an extended value get "%" escaped and a
    missing "charset'lang'" prefix becomes "''", so the result decodes as one extended value.
    Missing or duplicate indexes leave the segments as they were.
    """
    if not any("*" in name for name, _ in params):
        return tuple(params)
    out: list = []
    groups: dict[str, list[tuple[int, bool, str]]] = {}
    for name, value in params:
        m = _RFC2231_NAME.fullmatch(name)
        if m is None:
            out.append((name, value))
            continue
        base = m.group(1)
        index = 0 if m.group(2) is None else int(m.group(2))
        extended = m.group(2) is None or m.group(3) == "*"
        if base not in groups:
            groups[base] = []
            out.append(base)
        groups[base].append((index, extended, value))
    merged = []
    for item in out:
        if isinstance(item, tuple):
            merged.append(item)
            continue
        segs = sorted(groups[item], key=lambda seg: seg[0])
        if [seg[0] for seg in segs] != list(range(len(segs))):
            merged.extend((f"{item}*{i}{'*' if ext else ''}", v) for i, ext, v in segs)
            continue
        any_ext = any(ext for _, ext, _ in segs)
        value = "''" if any_ext and not segs[0][1] else ""
        for _, ext, v in segs:
            value += v.replace("%", "%25") if any_ext and not ext else v
        merged.append((item + "*" if any_ext else item, value))
    return tuple(merged)


def decoded_params(params: tuple[tuple[str, str], ...], fallback: str | None = None) -> dict[str, str]:
    """Decoded parameter values by plain name: RFC 2231 `name*` wins over `name` (RFC 2047 / 8-bit)."""
    out: dict[str, str] = {}
    for name, value in params:
        if name.endswith("*") and "*" not in name[:-1]:
            out[name[:-1]] = decode_rfc2231_value(value, fallback)
    for name, value in params:
        if "*" not in name and name not in out:
            out[name] = decode_header_value(value, fallback)
    return out



# --- HTML -------------------------------------------------------------------------------

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
