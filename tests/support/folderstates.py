"""Watching mailboxes.folderstate.load in tests: which reads came from a saved state."""

from __future__ import annotations

from mailboxes import folderstate


def record_loads(monkeypatch) -> list[int | None]:  # noqa: ANN001
    """What folderstate.load answers from now on, in order: None (the folder was read whole) or how many
    rows it read beyond the saved state."""
    seen: list[int | None] = []
    real = folderstate.load

    def recorded(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        got = real(*args, **kw)
        seen.append(None if got is None else got.behind)
        return got
    monkeypatch.setattr(folderstate, "load", recorded)
    return seen
