"""docs/deployment.md names only `postroom` commands and config keys that exist, and marks the rest *(planned)* until they land."""

from __future__ import annotations

import argparse
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from mailserver import config
from mailserver.cli import build_parser

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"
PLANNED = re.compile(r"`([^`]+)` \*\(planned\)\*")
INLINE = re.compile(r"`([^`]+)`")
KEY_REF = re.compile(r"^\[(\w+)\] (\w+)$")  # `[section] key`
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
KEYS = {(k.section, k.name) for k in config.KEYS}


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(_text()) if kind == lang]


def _prose() -> str:
    return FENCE.sub("", _text())


def _planned() -> set[str]:
    return set(PLANNED.findall(_text()))


def _subparsers(p: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)


def _command_exists(words: list[str]) -> bool:
    """Whether ``postroom <words>`` names subcommands that exist (options and arguments after them not checked)."""
    p = build_parser()
    for w in words:
        sub = _subparsers(p)
        if sub is None or w.startswith("-"):
            return True
        if w not in sub.choices:
            return False
        p = sub.choices[w]
    return True


def _parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


def _exists(ref: str) -> bool:
    m = KEY_REF.match(ref)
    if m:
        return (m.group(1), m.group(2)) in KEYS
    if ref.startswith("postroom "):
        return _parses([w if w != "N" else "2" for w in shlex.split(ref)[1:]])
    raise AssertionError(f"a *(planned)* mark on {ref!r}: only `[section] key` and `postroom ...` may carry one")


def test_the_guide_names_keys_and_commands():  # the checks below are not vacuous
    refs = INLINE.findall(_prose())
    assert sum(bool(KEY_REF.match(r)) for r in refs) >= 10
    assert sum(r.startswith("postroom ") for r in refs) >= 5
    assert _blocks("toml") and _blocks("sh")


def test_every_inline_key_exists_unless_planned():
    planned = _planned()
    missing = [r for r in INLINE.findall(_prose()) if (m := KEY_REF.match(r)) and r not in planned
               and (m.group(1), m.group(2)) not in KEYS]
    assert not missing, f"docs/deployment.md names config keys that do not exist: {missing}"


def test_every_toml_example_uses_existing_keys():
    for body in _blocks("toml"):
        for section, table in tomllib.loads(body).items():
            for key in table:
                assert (section, key) in KEYS, f"docs/deployment.md example uses [{section}] {key}, not a key"


def test_every_example_command_parses():
    for body in _blocks("sh"):
        for line in body.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line.startswith("postroom "):
                assert _parses(shlex.split(line)[1:]), f"docs/deployment.md: `{line}` is not a valid command"


def test_every_inline_command_names_real_subcommands():
    planned = _planned()
    for ref in INLINE.findall(_prose()):
        if ref.startswith("postroom ") and ref not in planned:
            assert _command_exists(shlex.split(ref)[1:]), f"docs/deployment.md: `{ref}` names no subcommand"


@pytest.mark.parametrize("ref", sorted(_planned()) or ["(none)"])
def test_nothing_marked_planned_has_landed(ref):
    if ref == "(none)":
        return
    assert not _exists(ref), f"`{ref}` exists now: drop its *(planned)* mark in docs/deployment.md"
