"""The self-signed certificate from `postroom init` is a server leaf, not a CA, and clients can pin it."""

from __future__ import annotations

import asyncio
import ssl

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mailserver import tls


def test_self_signed_certificate_is_a_leaf_for_server_auth(tmp_path):
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.make_self_signed(cert_path, key_path, "mail.city.test")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca is False
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign and not usage.crl_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mail.city.test" in san.get_values_for_type(x509.DNSName)
    assert key_path.stat().st_mode & 0o777 == 0o600


async def test_a_client_that_pins_the_certificate_verifies_the_host_name(tmp_path):
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    tls.make_self_signed(cert_path, key_path, "mail.city.test")
    server_ctx = tls.server_context(cert_path, key_path)

    async def serve(reader, writer):
        writer.write(b"hello\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        pinned = ssl.create_default_context(cafile=str(cert_path))
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=pinned,
                                                       server_hostname="mail.city.test")
        assert await reader.readline() == b"hello\n"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
