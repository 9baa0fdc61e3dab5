"""LIST/LSUB pattern matching (RFC 3501 §6.3.8) in linear time: a bit-parallel NFA, never a backtracking regex.

Implementation notes
- ``*`` matches any run of characters, ``%`` any run without the hierarchy delimiter.
  Adjacent wildcards collapse (``**`` → ``*``, ``%*`` → ``*``, ``%%`` → ``%``), so a wildcard
  is always followed by a literal or the end and the empty-match closure is one shift.
- State ``j`` (bit ``j`` of an int) means "the first ``j`` pattern tokens have matched".
  Per name character: literal tokens equal to it advance (shift), wildcard tokens that may
  take it stay. Cost O(len(name) × len(pattern) / machine word), whatever the pattern; a
  pattern with more literal characters than the name cannot match and is not run at all.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pattern", "compile_pattern"]


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled LIST pattern; ``fullmatch(name)`` like a regex's, in linear time."""

    literals: dict[str, int]  # character -> bits of the literal tokens that are this character
    star: int  # bits of ``*`` tokens
    percent: int  # bits of ``%`` tokens
    accept: int  # the bit past the last token
    min_length: int  # literal tokens: no shorter name can match
    delimiter: str

    def fullmatch(self, name: str) -> bool:
        if len(name) < self.min_length:
            return False
        wild = self.star | self.percent
        star, any_wild, literals, delim = self.star, wild, self.literals, self.delimiter
        state = 1 | ((1 & wild) << 1)
        for ch in name:
            stay = state & (star if ch == delim else any_wild)
            state = ((state & literals.get(ch, 0)) << 1) | stay
            if not state:
                return False
            state |= (state & wild) << 1
        return bool(state & self.accept)


def compile_pattern(pattern: str, delimiter: str = "/") -> Pattern:
    """Compile ``pattern``; ``*`` and ``%`` are the only special characters (RFC 3501 §6.3.8)."""
    tokens: list[str] = []
    for ch in pattern:
        if ch in "*%" and tokens and tokens[-1] in ("*", "%"):
            tokens[-1] = "*" if "*" in (ch, tokens[-1]) else "%"
        else:
            tokens.append(ch)
    literals: dict[str, int] = {}
    star = percent = 0
    for j, tok in enumerate(tokens):
        if tok == "*":
            star |= 1 << j
        elif tok == "%":
            percent |= 1 << j
        else:
            literals[tok] = literals.get(tok, 0) | (1 << j)
    wild_count = bin(star).count("1") + bin(percent).count("1")
    return Pattern(literals, star, percent, 1 << len(tokens), len(tokens) - wild_count, delimiter)
