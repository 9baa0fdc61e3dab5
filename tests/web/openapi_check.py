"""Every JSON API answer the tests get, checked against the OpenAPI document: documented operation, status, media type, schema."""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote, urlsplit

import jsonschema

from webmail import openapi

SEEN: set[tuple[str, str, str]] = set()  # (METHOD, documented path, status key) answered so far in this process


@functools.cache
def document() -> dict:
    return openapi.load()


@functools.cache
def _templates() -> list[tuple[re.Pattern, str]]:
    out = []
    for url in document()["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(url))
        out.append((re.compile(pattern + r"\Z"), url))
    return out


def documented_path(path: str) -> str:
    """The document's path template that `path` (under /api/v1, query allowed) matches."""
    path = unquote(urlsplit(path).path)
    matches = [url for rx, url in _templates() if rx.match(path)]
    assert matches, f"{path} is not documented"
    return min(matches, key=lambda u: u.count("{"))  # a literal segment wins over a template


def validate_response(method: str, path: str, response, body) -> None:
    """Assert that this answer is one the document describes (raises AssertionError or ValidationError)."""
    url = documented_path(path)
    op = document()["paths"][url].get(method.lower())
    assert op is not None, f"{method} {url} is not documented"
    status = str(response.status)
    key = status if status in op["responses"] else "default"
    assert key in op["responses"], f"{method} {url} answered {status}, which is not documented"
    spec = op["responses"][key]
    if "$ref" in spec:
        spec = document()["components"]["responses"][spec["$ref"].rsplit("/", 1)[1]]
    SEEN.add((method.upper(), url, key))
    content = spec.get("content")
    if not content:
        assert body is None, f"{method} {url} {status}: a body where none is documented"
        return
    assert response.content_type in content, f"{method} {url} {status}: {response.content_type} not documented"
    schema = content[response.content_type]["schema"]
    root = {"components": document()["components"], **schema}  # $refs resolve against the document's components
    jsonschema.Draft202012Validator(root).validate(body)
