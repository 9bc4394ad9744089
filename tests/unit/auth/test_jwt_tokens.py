"""Issuing and verifying bearer tokens: what a registry must accept, and every forgery it must
refuse."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from moorage.auth import jwt_tokens
from moorage.auth.access import Access, repository
from moorage.auth.gate import RefreshClaims
from moorage.auth.identity import Identity, Via
from moorage.auth.jwt_tokens import (
    InvalidToken,
    TokenIssuer,
    TokenVerifier,
    make_verifier,
)
from moorage.auth.signing_key import (
    KeyFileError,
    PrivateKey,
    SigningKey,
    jwk_thumbprint,
    libtrust_key_id,
    load_or_create,
    public_jwk,
    self_signed_certificate,
)

ISSUER = "moorage"
SERVICE = "registry.example.com"
EXTERNAL = "auth.example.com"
PULL_PUSH = [repository("team/app", "pull", "push")]
HASH = "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M="  # alice's password hash, unsalted: must not leak


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return load_or_create(None, None, tmp_path_factory.mktemp("data"))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(key: SigningKey, clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(key, ISSUER, 300, 86400, clock=clock)


@pytest.fixture
def verifier(key: SigningKey, clock: FakeClock) -> TokenVerifier:
    return make_verifier(key, ISSUER, SERVICE, clock=clock)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: object) -> str:
    return b64url(json.dumps(value).encode())


def claims(clock: FakeClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now)
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now,
        "iat": now,
        "jti": "j1",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def sign(private_key: PrivateKey, payload: dict[str, Any], alg: str, **headers: Any) -> str:
    return jwt.encode(payload, private_key, algorithm=alg, headers=headers)


def refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidToken) as error:
        verifier.verify(token)
    return error.value.reason


# --- what must be accepted -----------------------------------------------------------------


def test_issued_token_round_trips_to_the_granted_identity(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    issued = issuer.issue("alice", SERVICE, PULL_PUSH)

    assert verifier.verify(issued.token) == Identity(
        "alice", Via.BEARER, tuple(PULL_PUSH), issued_here=True
    )
    assert issued.expires_in == 300
    assert datetime.datetime.strptime(issued.issued_at, "%Y-%m-%dT%H:%M:%SZ")
    assert issued.token not in repr(issued)


def test_x5c_chain_on_request(key: SigningKey, verifier: TokenVerifier) -> None:
    issuer = TokenIssuer(key, ISSUER, 300, 3600, include_x5c=True)
    token = issuer.issue("alice", SERVICE, PULL_PUSH).token
    assert jwt.get_unverified_header(token)["x5c"] == key.x5c
    assert verifier.verify(token).name == "alice"


def test_issued_token_has_the_docker_token_spec_shape(
    key: SigningKey, issuer: TokenIssuer, clock: FakeClock
) -> None:
    token = issuer.issue(
        "alice", SERVICE, [*PULL_PUSH, Access("registry", "catalog", frozenset("*"))]
    ).token
    header = jwt.get_unverified_header(token)
    body = jwt.decode(token, options={"verify_signature": False})

    assert header == {"alg": "ES256", "typ": "JWT", "kid": key.kid}
    assert set(body) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"}
    assert body["exp"] - body["iat"] == 300
    assert body["access"] == [
        {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    assert issuer.issue("alice", SERVICE, PULL_PUSH).token != token  # a fresh jti each time


def test_anonymous_token_verifies_to_an_anonymous_bearer(
    issuer: TokenIssuer, verifier: TokenVerifier
) -> None:
    identity = verifier.verify(issuer.issue(None, SERVICE, [repository("public", "pull")]).token)

    assert identity.anonymous
    assert identity.limit == (repository("public", "pull"),)


def test_token_without_access_claim_grants_nothing(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = sign(key.private_key, claims(clock, access=None), "ES256", kid=key.kid)

    assert verifier.verify(token).limit == ()


def test_a_token_issued_a_little_in_the_future_is_accepted_within_leeway(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    # The token service's clock runs 10 s ahead of the registry's.
    token = sign(key.private_key, claims(clock, nbf=int(clock.now) + 10), "ES256", kid=key.kid)

    assert verifier.verify(token).name == "alice"


# --- forgeries and misuse ------------------------------------------------------------------


def test_alg_none_is_refused(key: SigningKey, clock: FakeClock, verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        header = {"alg": alg, "typ": "JWT", "kid": key.kid}
        token = f"{b64json(header)}.{b64json(claims(clock))}."
        refused(verifier, token)


def test_hs256_signed_with_the_public_key_as_secret_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    public_pem = key.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for secret in (public_pem, key.certificate.public_bytes(serialization.Encoding.PEM)):
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            signing_input = (
                f"{b64json({'alg': alg, 'typ': 'JWT', 'kid': key.kid})}.{b64json(claims(clock))}"
            )
            mac = hmac.new(secret, signing_input.encode(), digest).digest()
            assert (
                refused(verifier, f"{signing_input}.{b64url(mac)}")
                == "signing algorithm not allowed"
            )


def test_tampered_payload_is_refused(
    issuer: TokenIssuer, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = issuer.issue("alice", SERVICE, [repository("team/app", "pull")]).token
    header, _, signature = token.split(".")
    more = claims(
        clock,
        access=[{"type": "repository", "name": "team/app", "actions": ["pull", "push", "delete"]}],
    )
    forged = f"{header}.{b64json(more)}.{signature}"

    reason = refused(verifier, forged)
    assert reason == "bad signature"
    assert all(part not in reason for part in forged.split("."))


def test_tampered_signature_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue("alice", SERVICE, PULL_PUSH).token
    head, body, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]

    refused(verifier, f"{head}.{body}.{flipped}")
    refused(verifier, f"{head}.{body}.")


def test_token_for_another_service_is_refused(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    token = issuer.issue("alice", "other-registry", PULL_PUSH).token

    assert refused(verifier, token) == "token is for another service"


def test_token_from_another_issuer_name_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = TokenIssuer(key, "someone-else", 300, 600, clock=clock).issue(
        "alice", SERVICE, PULL_PUSH
    )

    assert refused(verifier, token.token) == "token issuer not trusted"


def test_expired_token_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    long_ago = FakeClock()
    long_ago.now = clock.now - 1000
    token = TokenIssuer(key, ISSUER, 300, 600, clock=long_ago).issue("alice", SERVICE, PULL_PUSH)

    assert refused(verifier, token.token) == "token expired"


def test_token_not_valid_yet_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = sign(key.private_key, claims(clock, nbf=int(clock.now) + 3600), "ES256", kid=key.kid)

    assert refused(verifier, token) == "token not valid yet"


@pytest.mark.parametrize("missing", ["iss", "aud", "exp", "nbf"])
def test_token_missing_a_required_claim_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier, missing: str
) -> None:
    payload = claims(clock)
    del payload[missing]

    refused(verifier, sign(key.private_key, payload, "ES256", kid=key.kid))


@pytest.mark.parametrize("value", ["soon", True, None, [1], float("inf")])
def test_token_with_a_non_numeric_exp_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier, value: object
) -> None:
    payload = claims(clock)
    payload["exp"] = value

    refused(verifier, sign(key.private_key, payload, "ES256", kid=key.kid))


def test_jwk_header_cannot_supply_the_key(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    foreign = ec.generate_private_key(ec.SECP256R1())
    jwk = {**public_jwk(foreign.public_key()), "kid": key.kid}

    with_our_kid = sign(foreign, claims(clock), "ES256", kid=key.kid, jwk=jwk)
    without_kid = sign(foreign, claims(clock), "ES256", jwk=jwk)

    assert refused(verifier, with_our_kid) == "bad signature"
    assert refused(verifier, without_kid) == "untrusted signing key"


def test_foreign_key_using_our_kid_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    foreign = ec.generate_private_key(ec.SECP256R1())

    assert refused(verifier, sign(foreign, claims(clock), "ES256", kid=key.kid)) == "bad signature"


def test_foreign_self_signed_x5c_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    foreign = ec.generate_private_key(ec.SECP256R1())
    der = self_signed_certificate(foreign).public_bytes(serialization.Encoding.DER)
    x5c = [base64.b64encode(der).decode()]

    assert (
        refused(verifier, sign(foreign, claims(clock), "ES256", x5c=x5c)) == "untrusted signing key"
    )
    # Our certificate in x5c does not make a foreign signature ours either.
    assert refused(verifier, sign(foreign, claims(clock), "ES256", x5c=key.x5c)) == "bad signature"


def test_our_x5c_alone_identifies_our_key(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = sign(key.private_key, claims(clock), "ES256", x5c=key.x5c)

    assert verifier.verify(token).name == "alice"


def test_refresh_token_is_not_an_access_token(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    refresh = issuer.issue_refresh("alice", SERVICE, "docker", HASH)

    assert refused(verifier, refresh) == "not an access token"
    assert "access" not in jwt.decode(refresh, options={"verify_signature": False})


def test_refresh_claim_under_an_access_typ_is_still_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = sign(
        key.private_key, claims(clock, token_use="refresh"), "ES256", kid=key.kid, typ="JWT"
    )

    assert refused(verifier, token) == "not an access token"


def test_refresh_token_round_trips_and_access_token_is_not_one(issuer: TokenIssuer) -> None:
    refresh = issuer.issue_refresh("alice", SERVICE, "docker", HASH)

    assert issuer.verify_refresh(refresh, SERVICE) == RefreshClaims(
        "alice", "docker", issuer.credential_binding(HASH)
    )
    with pytest.raises(InvalidToken):
        issuer.verify_refresh(refresh, "other-registry")
    with pytest.raises(InvalidToken, match="not a refresh token"):
        issuer.verify_refresh(issuer.issue("alice", SERVICE, PULL_PUSH).token, SERVICE)
    with pytest.raises(ValueError):
        issuer.issue_refresh("", SERVICE, "docker", HASH)


def test_a_refresh_token_carries_a_keyed_tag_of_the_credential_not_the_credential(
    issuer: TokenIssuer, key: SigningKey, tmp_path: Path
) -> None:
    refresh = issuer.issue_refresh("alice", SERVICE, "docker", HASH)
    payload = json.dumps(jwt.decode(refresh, options={"verify_signature": False}))
    assert HASH not in payload
    assert hashlib.sha256(HASH.encode()).hexdigest() not in payload
    assert issuer.credential_binding(HASH) != issuer.credential_binding(HASH + "x")
    # The same key gives the same tag (other workers, restarts); another key another one.
    again = TokenIssuer(key, ISSUER, 300, 86400)
    assert again.credential_binding(HASH) == issuer.credential_binding(HASH)
    other = TokenIssuer(load_or_create(None, None, tmp_path), ISSUER, 300, 86400)
    assert other.credential_binding(HASH) != issuer.credential_binding(HASH)


def test_refresh_token_expires(key: SigningKey, clock: FakeClock, issuer: TokenIssuer) -> None:
    refresh = issuer.issue_refresh("alice", SERVICE, "docker", HASH)
    clock.now += 86400 + 3600

    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify_refresh(refresh, SERVICE)


def test_refresh_token_from_a_foreign_key_is_refused(
    key: SigningKey, clock: FakeClock, issuer: TokenIssuer
) -> None:
    foreign = ec.generate_private_key(ec.SECP256R1())
    forged = sign(
        foreign,
        claims(clock, token_use="refresh", access=None),
        "ES256",
        kid=key.kid,
        typ="moorage-refresh+jwt",
    )

    with pytest.raises(InvalidToken, match="bad signature"):
        issuer.verify_refresh(forged, SERVICE)


@pytest.mark.parametrize(
    "access",
    [
        "repository:team/app:pull",
        {"type": "repository", "name": "team/app", "actions": ["pull"]},
        ["repository:team/app:pull"],
        [{"type": "repository", "name": "team/app", "actions": "pull"}],
        [{"type": "repository", "name": "team/app", "actions": [1]}],
        [{"type": "repository", "name": "team/app", "actions": None}],
        [{"type": "repository", "name": "team/app"}],
        [{"type": 1, "name": "team/app", "actions": ["pull"]}],
        [{"name": "team/app", "actions": ["pull"]}],
        [{"type": "repository", "name": "", "actions": ["pull"]}],
        [{"type": "repository", "name": ["team/app"], "actions": ["pull"]}],
        [{"type": "repository", "name": "ok", "actions": ["pull"]}, None],
    ],
)
def test_malformed_access_claim_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier, access: object
) -> None:
    token = sign(key.private_key, claims(clock, access=access), "ES256", kid=key.kid)

    assert refused(verifier, token) == "malformed access claim"


def test_non_string_subject_is_refused(
    key: SigningKey, clock: FakeClock, verifier: TokenVerifier
) -> None:
    refused(verifier, sign(key.private_key, claims(clock, sub=42), "ES256", kid=key.kid))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "abc",
        "a.b.c",
        "..",
        "a.b.c.d",
        f"{b64url(b'not json')}.{b64json({})}.",
        f"{b64json([1, 2])}.{b64json({})}.",
        f"{b64json({'alg': 'ES256'})}.{b64url(b'[1]')}.AAAA",
        "eyJhbGciOiJFUzI1NiJ9.eyJ.%%%",
        "x" * 20000 + "..",
        "\u00e9.\u00e9.\u00e9",
    ],
)
def test_garbage_is_refused(verifier: TokenVerifier, garbage: str) -> None:
    refused(verifier, garbage)


def test_payload_that_is_not_an_object_is_refused(key: SigningKey, verifier: TokenVerifier) -> None:
    token = jwt.PyJWS().encode(
        b"[1, 2, 3]", key.private_key, algorithm="ES256", headers={"kid": key.kid}
    )

    assert refused(verifier, token) == "malformed token"


# --- trusting an external issuer -----------------------------------------------------------


def write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates))
    return path


def test_external_issuer_trusted_through_a_certificate_bundle(
    key: SigningKey, clock: FakeClock, tmp_path: Path
) -> None:
    external = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = self_signed_certificate(external)
    verifier = make_verifier(
        key,
        ISSUER,
        SERVICE,
        EXTERNAL,
        write_pem(tmp_path / "bundle.pem", certificate),
        None,
        clock=clock,
    )
    x5c = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]
    theirs = claims(clock, iss=EXTERNAL)

    by_libtrust_kid = sign(external, theirs, "RS256", kid=libtrust_key_id(external.public_key()))
    by_thumbprint = sign(external, theirs, "RS256", kid=jwk_thumbprint(external.public_key()))
    by_x5c = sign(external, theirs, "RS256", x5c=x5c)
    for token in (by_libtrust_kid, by_thumbprint, by_x5c):
        assert verifier.verify(token).limit == (repository("team/app", "pull"),)

    # The key is trusted for its issuer only, and only with the algorithm of its type.
    impersonating_us = sign(
        external, claims(clock), "RS256", kid=libtrust_key_id(external.public_key())
    )
    assert refused(verifier, impersonating_us) == "token issuer not trusted"
    other_alg = sign(external, theirs, "PS256", kid=libtrust_key_id(external.public_key()))
    assert refused(verifier, other_alg) == "signing algorithm not allowed"
    # Our own tokens are still accepted beside the external issuer's.
    assert (
        verifier.verify(
            TokenIssuer(key, ISSUER, 300, 600, clock=clock).issue("bob", SERVICE, []).token
        ).name
        == "bob"
    )


def test_external_issuer_trusted_through_a_jwks(
    key: SigningKey, clock: FakeClock, tmp_path: Path
) -> None:
    external = ed25519.Ed25519PrivateKey.generate()
    es384 = ec.generate_private_key(ec.SECP384R1())
    jwks = {
        "keys": [
            {**public_jwk(external.public_key()), "kid": "ext-1", "use": "sig"},
            {**public_jwk(es384.public_key()), "kid": "ext-2", "alg": "ES384"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},  # encryption keys are skipped
        ]
    }
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks))
    verifier = make_verifier(None, ISSUER, SERVICE, EXTERNAL, None, path, clock=clock)
    theirs = claims(clock, iss=EXTERNAL)

    assert verifier.verify(sign(external, theirs, "EdDSA", kid="ext-1")).name == "alice"
    assert verifier.verify(sign(es384, theirs, "ES384", kid="ext-2")).name == "alice"
    assert (
        verifier.verify(sign(es384, theirs, "ES384", kid=jwk_thumbprint(es384.public_key()))).name
        == "alice"
    )

    third = ed25519.Ed25519PrivateKey.generate()
    assert refused(verifier, sign(third, theirs, "EdDSA", kid="ext-1")) == "bad signature"
    assert refused(verifier, sign(third, theirs, "EdDSA", kid="ext-3")) == "untrusted signing key"
    # Without our key, our own name buys nothing.
    assert (
        refused(verifier, sign(key.private_key, claims(clock), "ES256", kid=key.kid))
        == "untrusted signing key"
    )


def test_token_from_a_third_key_is_refused_with_a_bundle(
    key: SigningKey, clock: FakeClock, tmp_path: Path
) -> None:
    external = ec.generate_private_key(ec.SECP256R1())
    verifier = make_verifier(
        key,
        ISSUER,
        SERVICE,
        EXTERNAL,
        write_pem(tmp_path / "b.pem", self_signed_certificate(external)),
        None,
    )
    third = ec.generate_private_key(ec.SECP256R1())

    token = sign(
        third, claims(clock, iss=EXTERNAL), "ES256", kid=libtrust_key_id(third.public_key())
    )
    assert refused(verifier, token) == "untrusted signing key"


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    return private, certificate


def issue_cert(
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    public: ec.EllipticCurvePublicKey,
    *,
    is_ca: bool = False,
    days: int = 30,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signer")]))
        .issuer_name(ca[1].subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=2))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .sign(ca[0], hashes.SHA256())
    )


def x5c_of(*certificates: x509.Certificate) -> list[str]:
    return [
        base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in certificates
    ]


def test_x5c_chain_to_a_trusted_ca(clock: FakeClock, tmp_path: Path) -> None:
    root = make_ca("root")
    verifier = make_verifier(
        None, ISSUER, SERVICE, EXTERNAL, write_pem(tmp_path / "ca.pem", root[1]), None, clock=clock
    )
    theirs = claims(clock, iss=EXTERNAL)

    signer = ec.generate_private_key(ec.SECP256R1())
    direct = sign(signer, theirs, "ES256", x5c=x5c_of(issue_cert(root, signer.public_key())))
    assert verifier.verify(direct).name == "alice"

    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate = issue_cert(root, intermediate_key.public_key(), is_ca=True)
    leaf = issue_cert((intermediate_key, intermediate), signer.public_key())
    assert (
        verifier.verify(sign(signer, theirs, "ES256", x5c=x5c_of(leaf, intermediate))).name
        == "alice"
    )


def test_x5c_chains_that_do_not_lead_to_trust_are_refused(clock: FakeClock, tmp_path: Path) -> None:
    root, rogue = make_ca("root"), make_ca("root")  # same name, different key
    verifier = make_verifier(
        None, ISSUER, SERVICE, EXTERNAL, write_pem(tmp_path / "ca.pem", root[1]), None, clock=clock
    )
    theirs = claims(clock, iss=EXTERNAL)
    signer = ec.generate_private_key(ec.SECP256R1())

    from_rogue = issue_cert(rogue, signer.public_key())
    assert (
        refused(verifier, sign(signer, theirs, "ES256", x5c=x5c_of(from_rogue)))
        == "untrusted signing key"
    )
    # A leaf (not a CA) cannot vouch for another certificate.
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_cert(root, leaf_key.public_key())
    below_leaf = issue_cert((leaf_key, leaf), signer.public_key())
    assert (
        refused(verifier, sign(signer, theirs, "ES256", x5c=x5c_of(below_leaf, leaf)))
        == "untrusted signing key"
    )
    # Expired leaf.
    expired = issue_cert(root, signer.public_key(), days=-1)
    assert (
        refused(verifier, sign(signer, theirs, "ES256", x5c=x5c_of(expired)))
        == "untrusted signing key"
    )
    # Not a certificate at all.
    assert (
        refused(verifier, sign(signer, theirs, "ES256", x5c=["bm90IGEgY2VydA=="]))
        == "untrusted signing key"
    )
    assert refused(verifier, sign(signer, theirs, "ES256", x5c="abc")) == "untrusted signing key"


def test_unusable_trust_configuration_is_refused(key: SigningKey, tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="no token signing key"):
        make_verifier(None, ISSUER, SERVICE)
    with pytest.raises(KeyFileError, match="needs trusted_certs_file or trusted_jwks_file"):
        make_verifier(key, ISSUER, SERVICE, EXTERNAL)
    oct_jwks = tmp_path / "oct.json"
    oct_jwks.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    with pytest.raises(KeyFileError, match="'oct' is not accepted") as error:
        make_verifier(key, ISSUER, SERVICE, EXTERNAL, None, oct_jwks)
    assert "c2VjcmV0" not in str(error.value)
    mismatched = tmp_path / "alg.json"
    es = ec.generate_private_key(ec.SECP256R1()).public_key()
    mismatched.write_text(json.dumps({"keys": [{**public_jwk(es), "alg": "HS256"}]}))
    with pytest.raises(KeyFileError, match="does not fit"):
        make_verifier(key, ISSUER, SERVICE, EXTERNAL, None, mismatched)
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    with pytest.raises(KeyFileError):
        make_verifier(key, ISSUER, SERVICE, EXTERNAL, empty, None)
    with pytest.raises(KeyFileError, match="cannot read"):
        make_verifier(key, ISSUER, SERVICE, EXTERNAL, tmp_path / "missing.pem", None)


# --- the cache of verified tokens ----------------------------------------------------------


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real: Callable[..., bytes] = jwt_tokens._verify_signature

    def spy(token: str, *args: Any) -> bytes:
        calls.append(token)
        return real(token, *args)

    monkeypatch.setattr(jwt_tokens, "_verify_signature", spy)
    return calls


def test_signature_is_checked_once_per_token(
    issuer: TokenIssuer, verifier: TokenVerifier, signature_checks: list[str]
) -> None:
    token = issuer.issue("alice", SERVICE, PULL_PUSH).token

    first = verifier.verify(token)
    second = verifier.verify(token)

    assert first == second
    assert len(signature_checks) == 1


def test_a_cached_token_still_expires(
    issuer: TokenIssuer, verifier: TokenVerifier, clock: FakeClock, signature_checks: list[str]
) -> None:
    token = issuer.issue("alice", SERVICE, PULL_PUSH).token
    verifier.verify(token)

    clock.now += 300 + jwt_tokens.DEFAULT_LEEWAY_SECONDS + 1

    assert refused(verifier, token) == "token expired"


def test_cache_is_bounded(
    key: SigningKey, issuer: TokenIssuer, clock: FakeClock, signature_checks: list[str]
) -> None:
    verifier = make_verifier(key, ISSUER, SERVICE, clock=clock)
    small = TokenVerifier(verifier._keys, SERVICE, cache_size=2, clock=clock)
    tokens = [issuer.issue(f"user{i}", SERVICE, PULL_PUSH).token for i in range(3)]
    for token in tokens:
        small.verify(token)

    small.verify(tokens[0])  # evicted by the third: checked again

    assert len(signature_checks) == 4


def test_a_refused_token_is_not_cached(
    issuer: TokenIssuer, verifier: TokenVerifier, signature_checks: list[str]
) -> None:
    token = issuer.issue("alice", "other-registry", PULL_PUSH).token
    refused(verifier, token)
    refused(verifier, token)

    assert len(signature_checks) == 2


def test_concurrent_verification_agrees(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    tokens = [issuer.issue(f"user{i % 5}", SERVICE, PULL_PUSH).token for i in range(50)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        names = list(pool.map(lambda t: verifier.verify(t).name, tokens * 4))

    assert names == [f"user{i % 5}" for i in range(50)] * 4
