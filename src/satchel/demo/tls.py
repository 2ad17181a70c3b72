"""A self-signed certificate for serving the demo over HTTPS on this machine.

Browsers only do device-bound sessions over HTTPS. ``make_certificate`` writes a fresh
EC P-256 certificate for ``localhost``, ``127.0.0.1`` and ``::1``; ``spki_sha256`` is the
value Chromium's ``--ignore-certificate-errors-spki-list=`` takes to trust it.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_FOR = timedelta(days=7)
BACKDATE = timedelta(hours=1)  # tolerate a client clock a little behind


@dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path
    spki_sha256: str  # base64 of the SHA-256 of the DER SubjectPublicKeyInfo


def make_certificate(directory: Path) -> Certificate:
    """Write ``cert.pem`` and ``key.pem`` (mode 0600) into ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now - BACKDATE + VALID_FOR)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    keyfile = directory / "key.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    certfile = directory / "cert.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return Certificate(certfile, keyfile, _spki_sha256(certificate))


def check_files(certfile: Path, keyfile: Path) -> str:
    """The SPKI hash of ``certfile`` if the pair can serve TLS, else a one-line ValueError
    (naming the file at fault where it can tell)."""
    try:
        spki = spki_sha256(certfile)
    except ValueError:
        raise ValueError(f"--certfile {certfile}: no PEM certificate in it") from None
    try:
        serialization.load_pem_private_key(keyfile.read_bytes(), password=None)
    except TypeError:
        raise ValueError(
            f"--keyfile {keyfile}: the key is encrypted; give one that is not"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"--keyfile {keyfile}: no PEM private key in it") from None
    try:  # what the server will do: this also catches a key that is not the certificate's
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        cause = " ".join(str(exc).split())
        raise ValueError(f"--certfile {certfile} with --keyfile {keyfile}: {cause}") from None
    return spki


def spki_sha256(certfile: Path) -> str:
    """The SPKI hash of the first certificate in a PEM file (raises ValueError if none)."""
    return _spki_sha256(x509.load_pem_x509_certificate(certfile.read_bytes()))


def _spki_sha256(certificate: x509.Certificate) -> str:
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")
