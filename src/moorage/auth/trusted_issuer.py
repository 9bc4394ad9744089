"""Which keys may sign the tokens /v2 accepts, and for which issuer.

Trust is configured the way distribution's ``token`` auth does it: a PEM bundle of certificates
(``rootcertbundle``) or a JWKS file (``jwks``). Each trusted key is bound to one issuer name, so
a key trusted for an external issuer can never mint tokens claiming to come from us (or from
anyone else). A token names its key by ``kid`` (looked up here under the JWKS ``kid``, the
libtrust key id and the RFC 7638 thumbprint) or carries an ``x5c`` chain that must lead to a
certificate of the bundle. A ``jwk`` header is never trusted to supply a key.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from moorage.auth.signing_key import (
    KeyFileError,
    PublicKey,
    alg_for_key,
    as_public_key,
    certificate_public_key,
    jwk_thumbprint,
    libtrust_key_id,
    read_file,
    same_public_key,
)

# Longest x5c chain followed (leaf plus intermediates); real issuers send one to three.
MAX_CHAIN_LENGTH = 4


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A public key whose signature we accept, with the only algorithm and issuer it may sign."""

    public_key: PublicKey
    alg: str
    issuer: str
    # Our own token signing key: its tokens were granted under our policy, which still binds them.
    own: bool = False


@dataclass(frozen=True, slots=True)
class TrustedRoot:
    """A certificate an ``x5c`` chain may lead to; tokens it vouches for must name ``issuer``."""

    certificate: x509.Certificate
    issuer: str


def trusted_key(public_key: PublicKey, issuer: str) -> TrustedKey:
    return TrustedKey(public_key, alg_for_key(public_key), issuer)


def key_ids(key: PublicKey) -> set[str]:
    """Every ``kid`` a token signed by ``key`` may use to name it without a JWKS ``kid``."""
    return {libtrust_key_id(key), jwk_thumbprint(key)}


def add_key(keys: dict[str, TrustedKey], kid: str, key: TrustedKey, source: str) -> None:
    """Index ``key`` under ``kid``, refusing one id for two different keys or issuers."""
    existing = keys.get(kid)
    if existing is not None and (
        existing.issuer != key.issuer or not same_public_key(existing.public_key, key.public_key)
    ):
        raise KeyFileError(f"{source}: key id {kid!r} names two different keys")
    keys[kid] = key


def load_cert_bundle(path: Path, issuer: str) -> tuple[dict[str, TrustedKey], list[TrustedRoot]]:
    """Trust every certificate in the PEM bundle at ``path`` for ``issuer``: its key by id,
    and the certificate itself as the end of an ``x5c`` chain."""
    data = read_file(path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM certificate bundle") from None
    keys: dict[str, TrustedKey] = {}
    for cert in certificates:
        try:
            key = trusted_key(certificate_public_key(cert), issuer)
        except KeyFileError as error:
            raise KeyFileError(f"{path}: {error}") from None
        for kid in key_ids(key.public_key):
            add_key(keys, kid, key, str(path))
    return keys, [TrustedRoot(cert, issuer) for cert in certificates]


def load_jwks(path: Path, issuer: str) -> dict[str, TrustedKey]:
    """Trust every signing key of the JWKS file at ``path`` for ``issuer``."""
    try:
        document = json.loads(read_file(path))
    except ValueError:
        raise KeyFileError(f"{path}: not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeyFileError(f'{path}: a JWKS needs a non-empty "keys" list')
    keys: dict[str, TrustedKey] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: keys[{index}]"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{where}: not an object")
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key signs nothing
        key = _jwk_key(entry, issuer, where)
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise KeyFileError(f"{where}: kid must be a string")
        names = key_ids(key.public_key) | ({kid} if kid else set())
        for name in names:
            add_key(keys, name, key, str(path))
    if not keys:
        raise KeyFileError(f"{path}: no signing keys")
    return keys


_JWK_READERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "EC": ECAlgorithm.from_jwk,
    "RSA": RSAAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}


def _jwk_key(entry: Mapping[str, Any], issuer: str, where: str) -> TrustedKey:
    reader = _JWK_READERS.get(str(entry.get("kty")))
    if reader is None:
        # Notably "oct": a shared secret would let anyone holding it forge tokens (HS*).
        raise KeyFileError(f"{where}: key type {entry.get('kty')!r} is not accepted")
    try:
        loaded = reader(dict(entry))
    except (InvalidKeyError, ValueError, TypeError, KeyError):
        raise KeyFileError(f"{where}: not a valid {entry.get('kty')} key") from None
    try:
        # A JWKS holding a private key ("d") is a mistake, but only its public half is used.
        key = trusted_key(as_public_key(loaded), issuer)
    except KeyFileError as error:
        raise KeyFileError(f"{where}: {error}") from None
    declared = entry.get("alg")
    if declared is not None and declared != key.alg:
        raise KeyFileError(f"{where}: alg {declared!r} does not fit the key ({key.alg})")
    return key


def key_from_x5c(
    x5c: object, roots: Sequence[TrustedRoot], now: datetime.datetime
) -> TrustedKey | None:
    """The leaf key of an ``x5c`` header when the chain leads to one of ``roots``, else None.

    The leaf is trusted when it is a root itself or is signed by a root that is a CA, possibly
    through CA intermediates carried in the chain. Every certificate must be valid at ``now``.
    """
    if not isinstance(x5c, list) or not 1 <= len(x5c) <= MAX_CHAIN_LENGTH:
        return None
    chain: list[x509.Certificate] = []
    for item in x5c:
        if not isinstance(item, str):
            return None
        try:
            chain.append(x509.load_der_x509_certificate(base64.b64decode(item, validate=True)))
        except (ValueError, binascii.Error):
            return None
    if not all(_valid_at(cert, now) for cert in chain):
        return None
    for depth, cert in enumerate(chain):
        root = _root_vouching_for(cert, roots, now)
        if root is not None:
            try:
                return trusted_key(certificate_public_key(chain[0]), root.issuer)
            except KeyFileError:
                return None
        parent = chain[depth + 1] if depth + 1 < len(chain) else None
        if parent is None or not _is_ca(parent) or not _issued_by(cert, parent):
            return None
    return None


def _root_vouching_for(
    cert: x509.Certificate, roots: Sequence[TrustedRoot], now: datetime.datetime
) -> TrustedRoot | None:
    for root in roots:
        if cert == root.certificate:
            return root
        anchor = root.certificate
        if _is_ca(anchor) and _valid_at(anchor, now) and _issued_by(cert, anchor):
            return root
    return None


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
