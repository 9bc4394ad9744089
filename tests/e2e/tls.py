"""A throw-away certificate authority for tests, and a registry process that serves TLS with it.

``make_pki(dir)`` writes a CA and a server certificate for ``127.0.0.1``, ``::1`` and
``localhost`` (ECDSA P-256, valid for a day) with the ``cryptography`` package; nothing leaves
the directory. ``TlsRegistryServer`` is ``support.RegistryServer`` started with
``--tls-cert/--tls-key``, whose ``url``/``client()`` speak https and trust only that CA.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .support import BuiltImage, OciLayout, RegistryServer, Tool, new_image_layout

SERVER_NAMES = ("127.0.0.1", "::1", "localhost")
VALIDITY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    """Files of a test CA and one server certificate it signed."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    #: Holds only ``ca.crt``: what containers/image tools take as ``--cert-dir`` (they read
    #: ``*.crt`` there as CAs, and ``*.cert``/``*.key`` as a client certificate).
    cert_dir: Path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this CA alone (not the system's)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Moorage tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_alt_names(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(directory: Path, names: Sequence[str] = SERVER_NAMES) -> Pki:
    """Write ``ca.crt`` (+ ``ca.key``), ``server.crt`` (signed by the CA) and ``server.key``."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Moorage test CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(_subject_alt_names(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    (directory / "ca.crt").write_bytes(ca_pem)
    (directory / "ca.key").write_bytes(_pem_key(ca_key))
    (directory / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(_pem_key(server_key))
    for key_file in (directory / "ca.key", directory / "server.key"):
        key_file.chmod(0o600)
    cert_dir = directory / "certs.d"
    cert_dir.mkdir(exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(ca_pem)
    return Pki(directory / "ca.crt", directory / "server.crt", directory / "server.key", cert_dir)


class TlsRegistryServer(RegistryServer):
    """``moorage serve --tls-cert --tls-key``; ``url`` is https and clients trust ``pki``."""

    scheme = "https"

    def __init__(self, workdir: Path, pki: Pki, extra_args: Sequence[str] = ()) -> None:
        super().__init__(
            "moorage",
            workdir,
            extra_args=[
                "--tls-cert",
                str(pki.server_cert),
                "--tls-key",
                str(pki.server_key),
                *extra_args,
            ],
        )
        self.pki = pki
        self.verify = pki.ssl_context()


def skopeo_round_trip(
    skopeo: Tool,
    host: str,
    cert_dir: Path,
    workdir: Path,
    repository: str,
    creds: str | None = None,
) -> BuiltImage:
    """Push a fresh image to ``docker://host/repository:v1`` verifying TLS against the CA in
    ``cert_dir`` alone (logging in with ``creds``, ``user:password``, if given), copy it back
    into another layout, and check it arrived byte for byte."""
    source = OciLayout(workdir / f"{repository.replace('/', '-')}-source")
    image = new_image_layout(source.path, f"tls-{repository}-{host}")
    remote = f"docker://{host}/{repository}:v1"
    skopeo(
        "copy",
        "--dest-tls-verify=true",
        "--dest-cert-dir",
        cert_dir,
        *(("--dest-creds", creds) if creds else ()),
        source.reference("v1"),
        remote,
    )
    back = OciLayout(workdir / f"{repository.replace('/', '-')}-back")
    skopeo(
        "copy",
        "--src-tls-verify=true",
        "--src-cert-dir",
        cert_dir,
        *(("--src-creds", creds) if creds else ()),
        "--preserve-digests",
        remote,
        back.reference("v1"),
    )
    pulled = back.resolve("v1")
    assert pulled.digest == image.manifest.digest
    assert back.read_blob(pulled.digest) == image.manifest_bytes
    assert back.image_blobs(pulled.digest) == image.blob_digests
    assert back.corrupt_blobs() == []
    for digest in image.blob_digests:
        assert back.read_blob(digest) == source.read_blob(digest)
    return image
