"""SMTP listeners: pure door policy and the aiosmtpd adapter."""
