"""The JSON API's OpenAPI 3.1 document, assembled from the fragments webmail/openapi/*.yaml and served at /api/v1/openapi.json.

Each fragment is a YAML mapping with `paths:` (paths relative to the server URL /api/v1) and
optionally `components:` (schemas, responses, ...). The loader adds the common parts (the
bearer scheme, RFC 9457 problem details) and refuses a fragment that documents a path and
method, or a component name, that another fragment already has. A test checks the document
against the live routes both ways and validates the tests' real responses against it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import yaml

FRAGMENTS = Path(__file__).resolve().parent / "openapi"
SERVER_URL = "/api/v1"
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader: ~10x faster at start-up
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

BASE: dict = {
    "openapi": "3.1.0",
    "info": {"title": "Postroom API", "version": "1",
             "description": "Administration of a Postroom mail server. Errors are RFC 9457 problem details."},
    "servers": [{"url": SERVER_URL}],
    "security": [{"bearer": []}],
    "paths": {},
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "An API token from `postroom token add`."}},
        "schemas": {
            "Problem": {
                "type": "object", "required": ["type", "title", "status"],
                "properties": {"type": {"type": "string"}, "title": {"type": "string"},
                               "status": {"type": "integer"}, "detail": {"type": "string"},
                               "field": {"type": "string", "description": "The input field at fault."}},
            },
        },
        "responses": {
            "Problem": {"description": "An error (RFC 9457 problem details).",
                        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}},
        },
    },
}


class FragmentError(ValueError):
    """A fragment that is not a mapping of paths and components, or that repeats another's."""


def load(folder: Path = FRAGMENTS) -> dict:
    """The whole document: BASE plus every fragment in `folder`, in name order."""
    doc = json.loads(json.dumps(BASE))  # a deep copy
    for path in sorted(folder.glob("*.yaml")):
        merge(doc, yaml.load(path.read_text(encoding="utf-8"), Loader=SAFE_LOADER) or {}, path.name)
    return doc


def merge(doc: dict, fragment: dict, name: str) -> None:
    if not isinstance(fragment, dict) or set(fragment) - {"paths", "components"}:
        raise FragmentError(f"{name}: a fragment has only `paths:` and `components:`")
    for url, item in (fragment.get("paths") or {}).items():
        known = doc["paths"].setdefault(url, {})
        for method, op in item.items():
            if method in known:
                raise FragmentError(f"{name}: {method.upper()} {url} is already documented")
            known[method] = op
    for kind, entries in (fragment.get("components") or {}).items():
        known = doc["components"].setdefault(kind, {})
        for key, value in entries.items():
            if key in known:
                raise FragmentError(f"{name}: components/{kind}/{key} is already defined")
            known[key] = value


def operations(doc: dict) -> set[tuple[str, str]]:
    """(METHOD, path under the server URL) of every documented operation."""
    return {(m.upper(), url) for url, item in doc["paths"].items() for m in item if m in METHODS}


@functools.cache
def served() -> bytes:
    """The document the API serves at /api/v1/openapi.json, read once per process (parsing the YAML took
    about 0.1 s each time an app was made: every test's server, a service restarted in-process)."""
    return as_json(load())


def as_json(doc: dict) -> bytes:
    return json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
