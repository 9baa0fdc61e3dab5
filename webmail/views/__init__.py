"""The webmail's request handlers, one module per area (sign-in, mail list, message, compose, live updates)."""
