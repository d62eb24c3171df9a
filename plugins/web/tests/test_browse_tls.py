"""Browse over HTTPS: the guarded transport connects to the vetted address while TLS
verifies the certificate against the host name in the URL (a loopback HTTPS server with a
certificate from a throwaway CA made here)."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agently_core_web.testing import Site, page

from agently_core.builtins.actions import Browse

NAME = "otters.test"


def _certificates(where: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for ``otters.test`` signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, signer: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
        else:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("agently test CA", ca_key, "agently test CA", ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(NAME, key, "agently test CA", ca_key, False)
    pem = serialization.Encoding.PEM
    (where / "ca.pem").write_bytes(ca.public_bytes(pem))
    (where / "server.pem").write_bytes(cert.public_bytes(pem))
    (where / "server.key").write_bytes(key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return where / "ca.pem", where / "server.pem", where / "server.key"


@pytest.fixture(scope="module")
def https_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Site, Path]]:
    ca, cert, key = _certificates(tmp_path_factory.mktemp("tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = Site({"/": page("<html><head><title>Secure otters</title></head><body><article>"
                           "<h1>Secure otters</h1><p>This page came over TLS from a loopback "
                           "server whose certificate names otters.test only.</p></article>"
                           "</body></html>")}, tls=context).start()
    yield site, ca
    site.stop()


async def _to_loopback(host: str, port: int) -> list[str]:
    if host != NAME:
        raise OSError(f"no such name {host!r}")
    return ["127.0.0.1"]


def test_https_verifies_the_url_host_while_connecting_to_the_vetted_address(
        make_agent: Any, https_site: tuple[Site, Path]) -> None:
    site, ca = https_site
    agent = make_agent()
    agent.use_actions(Browse(allow=[site.authority], resolver=_to_loopback, verify=str(ca),
                             timeout=5))
    record = agent.action.execute_action("browse", {"url": f"https://{NAME}:{site.port}/"})
    assert record.status == "success", record.error
    assert record.result["title"] == "Secure otters"
    # the certificate names otters.test, not 127.0.0.1: by address, verification fails
    record = agent.action.execute_action("browse", {"url": f"https://127.0.0.1:{site.port}/"})
    assert record.status == "failed" and record.error_type == "BrowseError"
    assert "CERTIFICATE_VERIFY_FAILED" in record.error or "certificate" in record.error


def test_an_unknown_ca_is_refused_by_default(make_agent: Any,
                                             https_site: tuple[Site, Path]) -> None:
    site, _ = https_site
    agent = make_agent()
    agent.use_actions(Browse(allow=[site.authority], resolver=_to_loopback, timeout=5))
    record = agent.action.execute_action("browse", {"url": f"https://{NAME}:{site.port}/"})
    assert record.status == "failed" and record.error_type == "BrowseError"
    assert "CERTIFICATE_VERIFY_FAILED" in record.error
