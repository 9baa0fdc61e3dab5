"""Fuzz one target with atheris: ``python -m tests.fuzz.run TARGET [libFuzzer options] [corpus dirs]``.

The parsers are instrumented for coverage as they are imported (atheris.instrument_imports), so
the target modules must not be imported before this runs. ``make fuzz`` runs every target.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["mailserver", "mailboxes"]):
    from tests.fuzz.targets import MAX_INPUT, TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: python -m tests.fuzz.run {{{','.join(TARGETS)}}} [libFuzzer options] [corpus dirs]")
    target = TARGETS[sys.argv[1]]
    argv = [sys.argv[0], f"-max_len={MAX_INPUT}", *sys.argv[2:]]
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
