"""Hostile-input suites: each case must be answered, leave the server serving others, not stall its loop, not grow its memory."""
