"""The compose editor's HTML: cleaned by nh3 to a small allow-list, and its text/plain twin made by inscriptis.

The editor (static/compose.js) offers bold, italic, underline, lists and links; whatever the browser
posts is cut down to exactly that here, on the server: no style, no script, no event handler,
links only to http, https and mailto. inscriptis (Apache-2.0) writes the text/plain alternative
(RFC 2046 §5.1.4) with list bullets and line breaks where a reader expects them.
"""

from __future__ import annotations

import nh3
from inscriptis import get_text

MAX_HTML_CHARS = 2 << 20  # of the editor's markup, before cleaning

TAGS = frozenset({"b", "strong", "i", "em", "u", "ul", "ol", "li", "a", "p", "br", "div", "blockquote"})
ATTRIBUTES = {"a": {"href"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})


def clean(markup: str) -> str:
    """The editor's markup with everything outside the allow-list removed (script and style with their content)."""
    return nh3.clean(markup[:MAX_HTML_CHARS], tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
                     url_schemes=set(URL_SCHEMES), link_rel="noopener noreferrer", strip_comments=True).strip()


def as_text(clean_markup: str) -> str:
    """The text/plain alternative of cleaned markup."""
    return get_text(clean_markup).strip("\n") + "\n" if clean_markup else ""


def document(clean_markup: str) -> str:
    """The text/html part: a whole document so that readers take its charset and language right."""
    return ('<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head><body>\n'
            + clean_markup + "\n</body></html>\n")


def body_of(stored_html: str) -> str:
    """The editable part of a text/html part saved by `document` (a draft continued), cleaned again."""
    return clean(stored_html)
