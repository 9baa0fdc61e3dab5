"""Webmail, admin console and JSON API (aiohttp)."""
