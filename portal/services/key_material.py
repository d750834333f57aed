"""Public-key checks and fingerprints, and key pairs made for users who ask for a new one.

SSH fingerprints are the MD5 of the key blob in colon-separated hex (what the compute API and
``ssh-keygen -E md5`` show); X.509 fingerprints are the SHA-1 of the certificate's DER encoding.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

KEY_BITS = 2048
GENERATED_COMMENT = "Generated-by-Compute"
# Microsoft's User Principal Name, which WinRM certificate authentication maps to a local user.
_UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")


class InvalidKey(ValueError):
    """The text is not a public key (or certificate) of the kind the key pair says."""


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in digest)


def ssh_fingerprint(public_key: str) -> str:
    """The MD5 fingerprint of an OpenSSH public key line, after checking that it is a real key."""
    try:
        text = public_key.strip()
        serialization.load_ssh_public_key(text.encode())
        blob = base64.b64decode(text.split()[1], validate=True)
    except (ValueError, IndexError, binascii.Error, UnicodeError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidKey("failed to generate fingerprint") from exc
    return _colon_hex(hashlib.md5(blob, usedforsecurity=False).digest())


def x509_fingerprint(certificate_pem: str) -> str:
    """The SHA-1 fingerprint of a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem.encode())
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InvalidKey(f"failed to generate X509 fingerprint. Error message: {exc}") from exc
    return _colon_hex(cert.fingerprint(hashes.SHA1()))  # noqa: S303 - a fingerprint, not a signature


def generate_ssh_keypair() -> tuple[str, str, str]:
    """A new RSA key: (private key PEM, OpenSSH public key line, fingerprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    public_line = f"{public.decode()} {GENERATED_COMMENT}"
    return private_pem, public_line, ssh_fingerprint(public_line)


def generate_x509_keypair(user_id: str) -> tuple[str, str, str]:
    """A self-signed client certificate for ``user_id`` (WinRM style): (base64 PKCS#12 with the private key
    and certificate, certificate PEM, fingerprint)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user_id)])
    upn = f"{user_id}@localhost".encode()
    # DER UTF8String: tag 0x0c, then the length (short form up to 127 bytes, else long form).
    length = bytes([len(upn)]) if len(upn) < 128 else bytes([0x82]) + len(upn).to_bytes(2, "big")
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.OtherName(_UPN_OID, b"\x0c" + length + upn)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    certificate_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    bundle = pkcs12.serialize_key_and_certificates(None, key, cert, None, serialization.NoEncryption())
    return base64.b64encode(bundle).decode(), certificate_pem, x509_fingerprint(certificate_pem)
