"""Digests: parsing, canonical form, hashing, and the DIGEST_INVALID contract."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from moorage.errors import ErrorCode, RegistryError
from moorage.oci.digest import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    Digest,
    check_algorithm,
    is_digest_like,
)

PROPERTY = settings(max_examples=200, deadline=None)

LOWER_HEX = "0123456789abcdef"
UPPER_HEX = "ABCDEF"
VALID_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")


def assert_digest_invalid(text: str) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        Digest.parse(text)
    assert info.value.code is ErrorCode.DIGEST_INVALID
    assert info.value.status == 400
    return info.value


# --- examples ---------------------------------------------------------------------------------


def test_parse_known_sha256() -> None:
    text = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    digest = Digest.parse(text)
    assert digest.algorithm == "sha256"
    assert digest.encoded == text.split(":", 1)[1]
    assert str(digest) == text


def test_of_bytes_matches_hashlib_for_both_algorithms() -> None:
    assert str(Digest.of_bytes(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert Digest.of_bytes(b"abc", "sha512").encoded == hashlib.sha512(b"abc").hexdigest()
    assert DEFAULT_ALGORITHM == "sha256"


def test_digest_is_a_hashable_value() -> None:
    a = Digest.parse("sha256:" + "a" * 64)
    b = Digest.parse("sha256:" + "a" * 64)
    assert a == b
    assert hash(a) == hash(b)
    assert {a, b} == {a}
    assert a != Digest.parse("sha256:" + "b" * 64)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256",
        "sha256:",
        ":" + "a" * 64,
        "sha256:" + "a" * 63,
        "sha256:" + "a" * 65,
        "sha512:" + "a" * 64,
        "sha256:" + "A" * 64,
        "sha256:" + "g" * 64,
        "SHA256:" + "a" * 64,
        "sha256 :" + "a" * 64,
        " sha256:" + "a" * 64,
        "sha256:" + "a" * 64 + " ",
        "sha256::" + "a" * 64,
        "sha256:" + "a" * 32 + ":" + "a" * 31,
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha384:" + "a" * 96,
        "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564",
        "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
        "x" * 300,
    ],
)
def test_malformed_digests_are_refused(text: str) -> None:
    error = assert_digest_invalid(text)
    assert error.detail["digest"] == (text if len(text) <= 256 else text[:256] + "...")


def test_unknown_algorithm_names_it_and_lists_supported() -> None:
    error = assert_digest_invalid("sha384:" + "a" * 96)
    assert "sha384" in error.message
    assert error.detail["supported"] == ["sha256", "sha512"]


def test_wrong_length_message_states_expected_length() -> None:
    error = assert_digest_invalid("sha512:" + "a" * 64)
    assert "128" in error.message


def test_is_digest_like() -> None:
    assert is_digest_like("sha256:abc")
    assert is_digest_like("bogus:")
    assert not is_digest_like("latest")
    assert not is_digest_like("")


def test_check_algorithm() -> None:
    assert check_algorithm("sha256") == "sha256"
    assert check_algorithm("sha512") == "sha512"
    for bad in ("md5", "SHA256", "", "sha256 "):
        with pytest.raises(RegistryError) as info:
            check_algorithm(bad)
        assert info.value.code is ErrorCode.DIGEST_INVALID
        assert info.value.detail == {"supported": ["sha256", "sha512"]}


def test_trailing_newline_is_refused() -> None:
    assert_digest_invalid("sha256:" + "a" * 63 + "\n")


# --- properties -------------------------------------------------------------------------------

algorithms = st.sampled_from(sorted(ALGORITHMS))


@PROPERTY
@given(data=st.binary(max_size=256), algorithm=algorithms)
def test_valid_digests_round_trip(data: bytes, algorithm: str) -> None:
    text = f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
    digest = Digest.parse(text)
    assert str(digest) == text
    assert digest == Digest.of_bytes(data, algorithm)
    assert Digest.parse(str(digest)) == digest


@PROPERTY
@given(
    algorithm=algorithms,
    encoded=st.text(alphabet=LOWER_HEX, max_size=300),
)
def test_wrong_length_is_refused(algorithm: str, encoded: str) -> None:
    if len(encoded) == ALGORITHMS[algorithm]:
        encoded += "0"
    assert_digest_invalid(f"{algorithm}:{encoded}")


@PROPERTY
@given(
    data=st.binary(max_size=64),
    algorithm=algorithms,
    positions=st.lists(st.integers(0, 127), min_size=1, max_size=10),
    letter=st.sampled_from(UPPER_HEX),
)
def test_uppercase_hex_is_refused(
    data: bytes, algorithm: str, positions: list[int], letter: str
) -> None:
    encoded = list(hashlib.new(algorithm, data).hexdigest())
    for position in positions:
        encoded[position % len(encoded)] = letter
    assert_digest_invalid(f"{algorithm}:{''.join(encoded)}")


@PROPERTY
@given(
    algorithm=st.builds(
        "{}{}".format,
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8),
        st.sampled_from(["", "+b64u", ".v2", "_x", "-384", "256"]),
    ).filter(lambda a: a not in ALGORITHMS),
    encoded=st.text(alphabet=LOWER_HEX, min_size=1, max_size=128),
)
def test_unknown_algorithms_are_refused(algorithm: str, encoded: str) -> None:
    assert_digest_invalid(f"{algorithm}:{encoded}")


@PROPERTY
@given(text=st.text(max_size=300))
@example("sha256:" + "a" * 64)
@example("sha512:" + "0" * 128)
@example("sha256:" + "a" * 64 + "\x00")
def test_arbitrary_text_is_parsed_or_refused_with_digest_invalid(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except RegistryError as error:
        assert error.code is ErrorCode.DIGEST_INVALID
    else:
        assert VALID_DIGEST.fullmatch(text)
        assert str(digest) == text


@PROPERTY
@given(text=st.text(max_size=20))
def test_check_algorithm_accepts_exactly_the_registered_ones(text: str) -> None:
    try:
        assert check_algorithm(text) == text
    except RegistryError as error:
        assert error.code is ErrorCode.DIGEST_INVALID
        assert text not in ALGORITHMS
    else:
        assert text in ALGORITHMS
