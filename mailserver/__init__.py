"""Postroom network front: SMTP listeners, the IMAP4 server, TLS, authentication, config and the `postroom` command."""
