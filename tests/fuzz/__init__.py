"""Coverage-guided fuzzing (atheris) of the IMAP command parser, the MIME parser and the SMTP DATA reader."""
