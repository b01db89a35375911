"""HTTPS for the emulator: a self-signed certificate made at start, and the server's TLS context.

Cloud portals speak only HTTPS, and clients such as the official SDK build ``https://DOMAIN/rest/``
URLs themselves. ``self_signed(directory)`` writes ``cert.pem`` and ``key.pem`` (mode 600) valid
for 127.0.0.1, ::1 and localhost (plus any extra host names or addresses); a client trusts it
through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE`` or ``verify=cert.pem``. No network is used.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS = ("127.0.0.1", "::1", "localhost")
VALID_DAYS = 30


def self_signed(directory: str | os.PathLike[str], hosts: Iterable[str] = ()) -> tuple[Path, Path]:
    """Make a self-signed certificate and key in ``directory``; return (cert path, key path).

    The certificate is its own issuer and marked as a CA, so it can be the one trusted root a client
    is given; its names are ``DEFAULT_HOSTS`` and ``hosts`` (IP addresses go in as addresses).
    """
    names = list(dict.fromkeys([*DEFAULT_HOSTS, *(h for h in hosts if h and h not in ("0.0.0.0", "::"))]))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "b24sync emulator"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "b24sync (local, self-signed)")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName([_general_name(name) for name in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = Path(directory)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_bytes)
    return cert_path, key_path


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """The server side TLS context for a certificate and key (PEM files); ``ssl.SSLError``/``OSError`` when unusable."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(cert), str(key))
    return context
