"""The token signing key: created once (even by racing processes), kept private, and named."""

from __future__ import annotations

import multiprocessing
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import RSAAlgorithm

from moorage.auth.signing_key import (
    CERT_FILE_NAME,
    KEY_FILE_NAME,
    KeyFileError,
    SigningKey,
    jwk_thumbprint,
    libtrust_key_id,
    load_or_create,
    same_public_key,
    self_signed_certificate,
    write_once,
)


def pem_private(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def pem_cert(key: ec.EllipticCurvePrivateKey) -> bytes:
    return self_signed_certificate(key).public_bytes(serialization.Encoding.PEM)


def test_key_is_created_once_and_reused(tmp_path: Path) -> None:
    first = load_or_create(None, None, tmp_path)
    second = load_or_create(None, None, tmp_path)

    assert first.kid == second.kid
    assert same_public_key(first.public_key, second.public_key)
    assert first.certificate == second.certificate
    assert first.alg == "ES256"
    assert sorted(p.name for p in (tmp_path / "auth").iterdir()) == [CERT_FILE_NAME, KEY_FILE_NAME]


def test_key_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0)
    try:
        load_or_create(None, None, tmp_path)
    finally:
        os.umask(previous)

    key_mode = stat.S_IMODE((tmp_path / "auth" / KEY_FILE_NAME).stat().st_mode)
    assert key_mode == 0o600
    assert stat.S_IMODE((tmp_path / "auth").stat().st_mode) & 0o077 == 0


def _create_in_process(data_dir: str, barrier: object, results: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    results.put(load_or_create(None, None, Path(data_dir)).kid)  # type: ignore[attr-defined]


def test_processes_starting_at_once_end_with_one_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    workers = 4
    barrier = context.Barrier(workers)
    results = context.Queue()
    processes = [
        context.Process(target=_create_in_process, args=(str(tmp_path), barrier, results))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    kids = {results.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert kids == {load_or_create(None, None, tmp_path).kid}
    assert sorted(p.name for p in (tmp_path / "auth").iterdir()) == [CERT_FILE_NAME, KEY_FILE_NAME]


def test_the_second_writer_gets_the_first_writers_bytes(tmp_path: Path) -> None:
    path = tmp_path / "once"

    assert write_once(path, b"winner", 0o600) == b"winner"
    assert write_once(path, b"loser", 0o600) == b"winner"
    assert path.read_bytes() == b"winner"
    assert [p.name for p in tmp_path.iterdir()] == ["once"]  # no temporary files left


def test_configured_key_and_certificate_are_used(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    key_file, cert_file = tmp_path / "k.pem", tmp_path / "c.pem"
    key_file.write_bytes(pem_private(private))
    cert_file.write_bytes(pem_cert(private))

    key = load_or_create(key_file, cert_file, tmp_path / "data")

    assert key.kid == libtrust_key_id(private.public_key())
    assert not (tmp_path / "data" / "auth" / KEY_FILE_NAME).exists()


def test_configured_key_without_certificate_gets_one(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP384R1())
    key_file = tmp_path / "k.pem"
    key_file.write_bytes(pem_private(private))

    key = load_or_create(key_file, None, tmp_path)

    assert key.alg == "ES384"
    assert (tmp_path / "auth" / CERT_FILE_NAME).exists()
    assert load_or_create(key_file, None, tmp_path).certificate == key.certificate


def test_certificate_left_from_an_old_key_is_replaced(tmp_path: Path) -> None:
    load_or_create(None, None, tmp_path)
    (tmp_path / "auth" / KEY_FILE_NAME).unlink()

    key = load_or_create(None, None, tmp_path)

    assert same_public_key(key.public_key, key.certificate.public_key())  # type: ignore[arg-type]


def test_configured_certificate_for_another_key_is_refused(tmp_path: Path) -> None:
    key_file, cert_file = tmp_path / "k.pem", tmp_path / "c.pem"
    key_file.write_bytes(pem_private(ec.generate_private_key(ec.SECP256R1())))
    cert_file.write_bytes(pem_cert(ec.generate_private_key(ec.SECP256R1())))

    with pytest.raises(KeyFileError, match="not for the token key"):
        load_or_create(key_file, cert_file, tmp_path)


def test_unusable_key_files_are_refused_without_their_content(tmp_path: Path) -> None:
    garbage = tmp_path / "k.pem"
    garbage.write_bytes(
        b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(KeyFileError) as refused:
        load_or_create(garbage, None, tmp_path)
    assert str(garbage) in str(refused.value)
    assert "c2VjcmV0" not in str(refused.value)
    assert refused.value.__cause__ is None

    with pytest.raises(KeyFileError, match="cannot read"):
        load_or_create(tmp_path / "missing.pem", None, tmp_path)

    weak = tmp_path / "p192.pem"
    weak.write_bytes(pem_private(ec.generate_private_key(ec.SECP192R1())))
    with pytest.raises(KeyFileError, match="unsupported elliptic curve"):
        load_or_create(weak, None, tmp_path)


def test_repr_and_jwk_hold_no_private_material(tmp_path: Path) -> None:
    key = load_or_create(None, None, tmp_path)
    private_value = str(key.private_key.private_numbers().private_value)  # type: ignore[union-attr]

    assert private_value not in repr(key)
    assert "PRIVATE" not in repr(key)
    assert key.kid in repr(key)
    assert "d" not in key.jwk
    assert key.jwk["kty"] == "EC"
    assert key.jwk["crv"] == "P-256"
    assert key.jwk["kid"] == key.kid
    assert key.jwk["alg"] == "ES256"


def test_kid_is_the_libtrust_key_id(tmp_path: Path) -> None:
    key = load_or_create(None, None, tmp_path)
    groups = key.kid.split(":")

    assert len(groups) == 12
    # Base32 groups: "2345".isupper() is False, so test the alphabet itself.
    assert all(re.fullmatch(r"[A-Z2-7]{4}", group) for group in groups), key.kid


def test_rfc7638_thumbprint_matches_the_rfc_example() -> None:
    # RFC 7638 section 3.1.
    public = RSAAlgorithm.from_jwk(
        {
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhD"
            "R1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
            "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpb"
            "ISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"
            "kEgU8awapJzKnqDKgw",
            "e": "AQAB",
        }
    )
    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"  # type: ignore[arg-type]


def test_signing_key_refuses_a_mismatched_certificate() -> None:
    with pytest.raises(KeyFileError):
        SigningKey(
            ec.generate_private_key(ec.SECP256R1()),
            self_signed_certificate(ec.generate_private_key(ec.SECP256R1())),
        )
