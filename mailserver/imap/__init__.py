"""IMAP4rev1 server: a sans-I/O protocol core (grammar, commands, responses, session) and a thin asyncio adapter."""
