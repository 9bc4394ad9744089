"""The token service's signing key: loaded from configured PEM files or created once in
``<data_dir>/auth/``, plus the ways a public key is named (``kid``) and published (JWK).

Key ids. Tokens we sign carry ``kid`` = the **libtrust key id** of the public key, the form
distribution has always looked up in its trusted keys (so a stock ``registry`` given our
certificate as ``rootcertbundle`` finds our key by ``kid`` as well as by ``x5c``): SHA-256 of the
DER SubjectPublicKeyInfo, first 240 bits, base32, in twelve groups of four joined by ``:``.
When trusting someone else's keys we also index them under their RFC 7638 JWK thumbprint, the
other form issuers use (see :mod:`moorage.auth.trusted_issuer`).

Created files: ``token-key.pem`` (PKCS#8, mode 0600) and ``token-cert.pem`` (self-signed, 0644).
Each is written to a temporary file, fsynced, then hard-linked into place, which fails if the
name already exists: when two processes start at once, exactly one key is published and the
other process reads it instead of its own.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

KEY_FILE_NAME = "token-key.pem"
CERT_FILE_NAME = "token-cert.pem"
CERT_VALIDITY = datetime.timedelta(days=3650)
# RSA below this size is refused as a token key, ours or a trusted issuer's.
MIN_RSA_BITS = 2048

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

PUBLIC_KEY_TYPES = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey)
PRIVATE_KEY_TYPES = (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)

_SPKI_DER = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
_EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384"}


class KeyFileError(ValueError):
    """A key, certificate or trust file that cannot be used; the message names the file and
    the problem, never key bytes."""


# --- naming and publishing public keys (pure) ---------------------------------------------


def alg_for_key(key: PublicKey) -> str:
    """The one JWS algorithm a token signed by ``key`` may declare.

    Binding the algorithm to the key type (instead of trusting the token's ``alg``) is what
    makes ``none`` and HMAC-with-the-public-key confusion impossible.
    """
    if isinstance(key, ec.EllipticCurvePublicKey):
        alg = _EC_ALGORITHMS.get(key.curve.name)
        if alg is not None:
            return alg
        raise KeyFileError(f"unsupported elliptic curve {key.curve.name}")
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyFileError(f"RSA key of {key.key_size} bits is too small")
        return "RS256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise KeyFileError(f"unsupported key type {type(key).__name__}")


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The RFC 7517 JWK of ``key`` (public members only)."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return dict(ECAlgorithm.to_jwk(key, as_dict=True))
    if isinstance(key, rsa.RSAPublicKey):
        return dict(RSAAlgorithm.to_jwk(key, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(key, as_dict=True))


# RFC 7638 section 3.2: the required members of each key type, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638 SHA-256 thumbprint of ``key``, base64url without padding."""
    jwk = public_jwk(key)
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def libtrust_key_id(key: PublicKey) -> str:
    """The key id docker/libtrust (and so distribution) computes for ``key``."""
    der = key.public_bytes(*_SPKI_DER)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


def same_public_key(a: PublicKey, b: PublicKey) -> bool:
    return a.public_bytes(*_SPKI_DER) == b.public_bytes(*_SPKI_DER)


def as_public_key(key: object) -> PublicKey:
    """``key`` (or the public half of a private key) if it is of a type we sign or verify with."""
    if isinstance(key, PRIVATE_KEY_TYPES):
        key = key.public_key()
    if not isinstance(key, PUBLIC_KEY_TYPES):
        raise KeyFileError(f"unsupported key type {type(key).__name__}")
    return key


def certificate_public_key(cert: x509.Certificate) -> PublicKey:
    return as_public_key(cert.public_key())


# --- the signing key ------------------------------------------------------------------------


class SigningKey:
    """Our private key, its certificate, ``kid``, algorithm and public JWK."""

    __slots__ = ("alg", "certificate", "jwk", "kid", "private_key", "x5c")

    def __init__(self, private_key: PrivateKey, certificate: x509.Certificate) -> None:
        public = private_key.public_key()
        if not same_public_key(public, certificate_public_key(certificate)):
            raise KeyFileError("the certificate is not for the signing key")
        self.private_key = private_key
        self.certificate = certificate
        self.alg = alg_for_key(public)
        self.kid = libtrust_key_id(public)
        self.jwk: dict[str, Any] = {
            **public_jwk(public),
            "kid": self.kid,
            "alg": self.alg,
            "use": "sig",
        }
        # The JWS x5c header: standard (not url-safe) base64 of each DER certificate.
        der = certificate.public_bytes(serialization.Encoding.DER)
        self.x5c: list[str] = [base64.b64encode(der).decode()]

    @property
    def public_key(self) -> PublicKey:
        return self.private_key.public_key()

    def __repr__(self) -> str:
        # Never the key material: only what is public anyway.
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"


def load_or_create(key_file: Path | None, cert_file: Path | None, data_dir: Path) -> SigningKey:
    """The signing key from ``key_file`` (PEM, unencrypted) or, when that is not configured,
    from ``<data_dir>/auth/token-key.pem``, created (ES256, P-256) the first time.

    The certificate comes from ``cert_file`` when configured (it must be for the key); otherwise
    from ``<data_dir>/auth/token-cert.pem``, (re)created self-signed when missing or for another
    key. Raises :class:`KeyFileError` for unreadable or unusable files.
    """
    auth_dir = data_dir / "auth"
    if key_file is None or cert_file is None:
        auth_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if key_file is None:
        key_path = auth_dir / KEY_FILE_NAME
        if key_path.exists():
            key_pem = read_file(key_path)
        else:
            key_pem = write_once(key_path, _new_key_pem(), 0o600)
        private_key = _parse_private_key(key_pem, key_path)
    else:
        private_key = _parse_private_key(read_file(key_file), key_file)
    if cert_file is not None:
        certificate = _parse_certificate(read_file(cert_file), cert_file)
        if not same_public_key(private_key.public_key(), certificate_public_key(certificate)):
            raise KeyFileError(f"{cert_file}: the certificate is not for the token key")
    else:
        certificate = _default_certificate(auth_dir / CERT_FILE_NAME, private_key)
    return SigningKey(private_key, certificate)


def self_signed_certificate(
    private_key: PrivateKey, *, now: datetime.datetime | None = None
) -> x509.Certificate:
    """A self-signed certificate for ``private_key``: what ``x5c`` carries and what an external
    registry can be given as its trusted certificate bundle."""
    now = now or datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "moorage token signer")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        # An hour of slack for verifiers whose clock is behind ours.
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )
    algorithm = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(private_key, algorithm)


def _default_certificate(path: Path, private_key: PrivateKey) -> x509.Certificate:
    existing = _certificate_for(path, private_key) if path.exists() else None
    if existing is not None:
        return existing
    pem = self_signed_certificate(private_key).public_bytes(serialization.Encoding.PEM)
    if path.exists():
        # A certificate left from an earlier key (the key file was replaced): supersede it.
        replace_atomically(path, pem, 0o644)
        return _parse_certificate(pem, path)
    published = write_once(path, pem, 0o644)
    winner = _parse_certificate(published, path)
    if same_public_key(private_key.public_key(), certificate_public_key(winner)):
        return winner
    replace_atomically(path, pem, 0o644)
    return _parse_certificate(pem, path)


def _certificate_for(path: Path, private_key: PrivateKey) -> x509.Certificate | None:
    try:
        cert = _parse_certificate(read_file(path), path)
        key = certificate_public_key(cert)
    except KeyFileError:
        return None
    return cert if same_public_key(private_key.public_key(), key) else None


def _new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise KeyFileError(f"{path}: cannot read ({error.strerror})") from None


def _parse_private_key(pem: bytes, source: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # `from None`: the parser's message is not needed and must not drag key bytes along.
        raise KeyFileError(f"{source}: not an unencrypted PEM private key") from None
    if not isinstance(key, PRIVATE_KEY_TYPES):
        raise KeyFileError(f"{source}: unsupported key type {type(key).__name__}")
    try:
        alg_for_key(key.public_key())
    except KeyFileError as error:
        raise KeyFileError(f"{source}: {error}") from None
    return key


def _parse_certificate(pem: bytes, source: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise KeyFileError(f"{source}: not a PEM certificate") from None


# --- publishing files atomically ------------------------------------------------------------


def write_once(path: Path, data: bytes, mode: int) -> bytes:
    """Publish ``data`` at ``path`` unless a file is already there; return what ``path`` holds.

    The content is complete and fsynced before its name appears (a hard link of a temporary
    file, which cannot overwrite), so a reader never sees half a key and a second writer gets
    the first one's bytes back.
    """
    tmp = _write_temp(path, data, mode)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return path.read_bytes()
        _fsync_dir(path.parent)
        return data
    finally:
        tmp.unlink(missing_ok=True)


def replace_atomically(path: Path, data: bytes, mode: int) -> None:
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    # mkstemp creates the file 0600 and exclusively, so a key is never readable by others,
    # not even for a moment.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), mode)
            os.fsync(file.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on a directory
            os.fsync(fd)
    finally:
        os.close(fd)
