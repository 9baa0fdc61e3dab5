"""Test support: a real PostgreSQL server and helpers shared by the test layers."""
