"""Bridges: workflow events to mail, official document dispatch and registration."""
