"""The simulator's certificate material: two CAs, server leaves, and the shared signing key.

Only the simulator modules import ``cryptography``; the daemon never imports it.

The gateway CA is built like PIA's (basicConstraints CA:TRUE not critical, no keyUsage);
the token endpoint's CA is an ordinary one. :func:`ensure_material` makes them once per
folder (under a file lock, so simulator processes sharing a folder share one set) and
:func:`leaf_context` issues a server certificate and returns its TLS context.
"""

from __future__ import annotations

import fcntl
import secrets
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Material:
    """The simulator's CAs (gateway and token endpoint) and the shared signing key."""

    folder: Path
    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    token_ca_cert: x509.Certificate
    token_ca_key: ec.EllipticCurvePrivateKey
    signing_key: bytes = field(repr=False)

    @property
    def ca_file(self) -> Path:
        """The PIA-like CA certificate (PIA_CA_CERT)."""
        return self.folder / "pia-ca.crt"

    @property
    def token_ca_file(self) -> Path:
        """The token endpoint's CA certificate (REQUESTS_CA_BUNDLE)."""
        return self.folder / "token-ca.crt"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _builder(subject: str, issuer: x509.Certificate | None, key: Any) -> x509.CertificateBuilder:
    # A wide window: time-machine moves Python's clock, OpenSSL checks the real one.
    now = datetime.now(UTC)
    issuer_name = issuer.subject if issuer else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=400))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if issuer is not None:
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
        builder = builder.add_extension(aki, critical=False)
    return builder


def _key_usage(**wanted: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    return x509.KeyUsage(**(flags | wanted))


def _make_material(folder: Path) -> None:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Like PIA's CA: basicConstraints not critical, and no keyUsage at all.
    ca_cert = (
        _builder("PIA Simulator CA", None, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    token_key = ec.generate_private_key(ec.SECP256R1())
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
    token_cert = (
        _builder("PIA Simulator Public Root", None, token_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .sign(token_key, hashes.SHA256())
    )
    for stem, cert, key in (("pia-ca", ca_cert, ca_key), ("token-ca", token_cert, token_key)):
        _write_key(folder / f"{stem}.key", key)
        (folder / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    signing = folder / "signing.key"
    signing.write_text(secrets.token_hex(32) + "\n", encoding="ascii")
    signing.chmod(0o600)


def _write_key(path: Path, key: Any) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def ensure_material(folder: Path) -> Material:
    """Load the CAs and signing key from ``folder``, creating them on first use.

    A lock file makes concurrent simulator processes on one folder share one set.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "signing.key").exists():
            _make_material(folder)

    def key(name: str) -> Any:
        return serialization.load_pem_private_key((folder / name).read_bytes(), None)

    return Material(
        folder=folder,
        ca_cert=x509.load_pem_x509_certificate((folder / "pia-ca.crt").read_bytes()),
        ca_key=key("pia-ca.key"),
        token_ca_cert=x509.load_pem_x509_certificate((folder / "token-ca.crt").read_bytes()),
        token_ca_key=key("token-ca.key"),
        signing_key=bytes.fromhex((folder / "signing.key").read_text(encoding="ascii")),
    )


def leaf_context(
    material: Material, *, token: bool, cn: str, names: list[x509.GeneralName], stem: str
) -> ssl.SSLContext:
    """Issue a server certificate for ``cn`` (SANs ``names``) and return its TLS context.

    ``token=True`` signs with the token endpoint's CA, otherwise with the PIA-like one; the
    files land in ``<folder>/servers/<stem>.crt|.key``.
    """
    issuer, issuer_key = (
        (material.token_ca_cert, material.token_ca_key)
        if token
        else (material.ca_cert, material.ca_key)
    )
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(cn, issuer, key)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(issuer_key, hashes.SHA256())
    folder = material.folder / "servers"
    folder.mkdir(exist_ok=True)
    cert_file, key_file = folder / f"{stem}.crt", folder / f"{stem}.key"
    _write_key(key_file, key)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx
