"""Unit tests for the pure SMTP door rules and delivery helpers."""
