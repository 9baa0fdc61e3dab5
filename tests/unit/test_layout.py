"""The dependency direction between the five packages (style.md, "Layout note"), by walking imports."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("mailserver", "delivery", "mailboxes", "webmail", "bridges")
# package -> packages it may import (besides itself)
ALLOWED = {
    "mailboxes": set(),
    "delivery": {"mailboxes"},
    "mailserver": {"delivery", "mailboxes"},
    "webmail": {"delivery", "mailboxes"},
    "bridges": {"delivery", "mailboxes"},
}
COMPOSITION_ROOT = ROOT / "mailserver" / "app.py"


@functools.cache
def _tree(path: Path) -> ast.Module:
    """Each module parsed once for both tests (parsing them all twice was 2 s of the quick suite)."""
    return ast.parse(path.read_text(encoding="utf-8"))


def imported_packages(path: Path) -> set[str]:
    tree = _tree(path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out & set(PACKAGES)


def test_packages_import_only_downwards():
    bad = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if path == COMPOSITION_ROOT:
                continue
            extra = imported_packages(path) - ALLOWED[pkg] - {pkg}
            if extra:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(extra)}")
    assert bad == []


def test_every_module_says_what_it_is_for():
    missing = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if not ast.get_docstring(_tree(path)):
                missing.append(str(path.relative_to(ROOT)))
    assert missing == []


def test_no_module_waits_with_asyncio_wait_for():
    """Python 3.11's asyncio.wait_for swallows a cancellation that arrives as the awaited thing completes
    (it returns the result instead): a service loop whose close() cancels it then runs on, and close() waits
    forever (the documents intake did, hanging test teardowns; tests/multisite/test_shutdown.py).
    `async with asyncio.timeout(...)` keeps the cancellation."""
    bad = []
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            for node in ast.walk(_tree(path)):
                if isinstance(node, ast.Attribute) and node.attr == "wait_for" and \
                        isinstance(node.value, ast.Name) and node.value.id == "asyncio":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert bad == []
