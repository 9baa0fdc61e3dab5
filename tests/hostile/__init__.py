"""Hostile-input suites: each case gets its answer, the server stays up, no loop stall, bounded memory."""
