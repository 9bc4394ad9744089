"""Repository names and tags against the distribution spec's grammars."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from moorage.errors import ErrorCode, RegistryError
from moorage.oci.names import MAX_NAME_LENGTH, is_valid_tag, parse_name, parse_tag

PROPERTY = settings(max_examples=200, deadline=None)

NAME_GRAMMAR = re.compile(r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*")
TAG_GRAMMAR = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}")

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# --- strategies built from the grammar, piece by piece -----------------------------------------

alnums = st.text(alphabet=ALNUM, min_size=1, max_size=8)
# `\.|_|__|-+` (runs of up to three dashes stand for `-+`)
separators = st.sampled_from([".", "_", "__", "-", "--", "---"])


def grammar_names(max_pieces: int) -> st.SearchStrategy[str]:
    """`alnum ((separator | "/") alnum)*`: exactly the name grammar, flattened.

    A component is `[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*` and a name is components joined by
    "/", so a name is runs of `[a-z0-9]+` each joined by a separator or a slash.
    """
    joints = separators | st.just("/")
    tails = st.lists(st.tuples(joints, alnums).map("".join), max_size=max_pieces).map("".join)
    return st.tuples(alnums, tails).map("".join)


# At most 8 + 12 * (3 + 8) = 140 characters: never over 255.
valid_names = grammar_names(12)


def assert_name_invalid(name: str) -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_name(name)
    assert info.value.code is ErrorCode.NAME_INVALID
    assert info.value.status == 400
    return info.value


def assert_tag_invalid(tag: str) -> None:
    with pytest.raises(RegistryError) as info:
        parse_tag(tag)
    assert info.value.code is ErrorCode.MANIFEST_INVALID
    assert info.value.status == 400
    assert info.value.detail == {"tag": tag}


# --- names: examples ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "library/ubuntu",
        "my-org/my--app/sub_dir/x__y/v1.2",
        "a-----b",
        "a/b/c/d/e/f/g",
    ],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert parse_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/",
        "a/",
        "/a",
        "a//b",
        "a..b",
        "a/../b",
        "..",
        ".",
        "a/./b",
        "a%2eb",
        "a/%2e%2e/b",
        "a___b",
        "a._b",
        "a-.b",
        "-a",
        "a-",
        "_a",
        "a_",
        ".a",
        "a.",
        "Library/ubuntu",
        "library/Ubuntu",
        "a b",
        "a\\b",
        "a:b",
        "a@b",
        "é",
        "a\x00",
        " a",
    ],
)
def test_invalid_names_are_refused(name: str) -> None:
    error = assert_name_invalid(name)
    assert error.detail == {"name": name}


def test_length_limit_is_255() -> None:
    assert parse_name("a" * 255) == "a" * 255
    error = assert_name_invalid("a" * 256)
    assert error.detail == {"length": 256}
    assert "255" in error.message
    long_but_well_formed = "/".join(["abcdefghi"] * 26)  # 259 characters
    assert len(long_but_well_formed) > MAX_NAME_LENGTH
    assert_name_invalid(long_but_well_formed)


def test_name_with_trailing_newline_is_refused() -> None:
    assert_name_invalid("library/ubuntu\n")


# --- names: properties -------------------------------------------------------------------------


@PROPERTY
@given(name=valid_names)
def test_grammar_names_are_accepted(name: str) -> None:
    assert NAME_GRAMMAR.fullmatch(name)  # the strategy itself follows the grammar
    assert parse_name(name) == name


@PROPERTY
@given(
    name=valid_names,
    position=st.integers(0, MAX_NAME_LENGTH),
    inserted=st.sampled_from(["..", "%2e", "%2E", "/../", "/./", "//", "..."]),
)
def test_names_containing_dot_dot_or_encoded_dots_are_refused(
    name: str, position: int, inserted: str
) -> None:
    position %= len(name) + 1
    assert_name_invalid(name[:position] + inserted + name[position:])


@PROPERTY
@given(name=valid_names, position=st.integers(0, MAX_NAME_LENGTH), letter=st.sampled_from(UPPER))
def test_names_with_uppercase_are_refused(name: str, position: int, letter: str) -> None:
    position %= len(name) + 1
    candidate = name[:position] + letter + name[position:]
    assume(len(candidate) <= MAX_NAME_LENGTH)
    assert_name_invalid(candidate)


@PROPERTY
@given(
    name=valid_names,
    separator=separators | st.just("/"),
    leading=st.booleans(),
)
def test_names_with_leading_or_trailing_separators_are_refused(
    name: str, separator: str, leading: bool
) -> None:
    candidate = separator + name if leading else name + separator
    assert_name_invalid(candidate)
    # and a separator at either end of an inner path component
    if "/" in name:
        head, tail = name.split("/", 1)
        inner = f"{head}{separator}/{tail}" if leading else f"{head}/{separator}{tail}"
        assert_name_invalid(inner)


@PROPERTY
@given(name=valid_names, extra=st.integers(0, 200))
def test_names_over_255_characters_are_refused(name: str, extra: int) -> None:
    name += "/" + "a" * max(1, MAX_NAME_LENGTH + 1 - len(name) + extra)
    assert len(name) > MAX_NAME_LENGTH
    assert NAME_GRAMMAR.fullmatch(name)
    error = assert_name_invalid(name)
    assert error.detail == {"length": len(name)}


@PROPERTY
@given(text=st.text(max_size=300) | st.text(alphabet=ALNUM + "._-/A%", max_size=300))
@example("a/b")
@example("a" * 256)
def test_arbitrary_text_is_accepted_exactly_when_it_matches_the_grammar(text: str) -> None:
    expected = NAME_GRAMMAR.fullmatch(text) is not None and len(text) <= MAX_NAME_LENGTH
    try:
        result = parse_name(text)
    except RegistryError as error:
        assert error.code is ErrorCode.NAME_INVALID
        assert not expected
    else:
        assert expected
        assert result == text


# --- tags --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag", ["latest", "v1.2.3", "_", "_internal", "A", "1", "a" * 128, "sha256-abc.sig", "a--b"]
)
def test_valid_tags(tag: str) -> None:
    assert is_valid_tag(tag)
    assert parse_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    ["", ".hidden", "-x", "a" * 129, "a/b", "a:b", "a b", "sha256:" + "a" * 64, "é", "a+b", "a\t"],
)
def test_invalid_tags(tag: str) -> None:
    assert not is_valid_tag(tag)
    assert_tag_invalid(tag)


def test_tags_with_trailing_newline_are_refused() -> None:
    assert not is_valid_tag("latest\n")
    assert not is_valid_tag("a" * 128 + "\n")


@PROPERTY
@given(tag=st.from_regex(TAG_GRAMMAR, fullmatch=True))
def test_grammar_tags_are_accepted(tag: str) -> None:
    assert is_valid_tag(tag)
    assert parse_tag(tag) == tag


@PROPERTY
@given(
    first=st.sampled_from(".-"),
    rest=st.text(alphabet=ALNUM + UPPER + "._-", max_size=127),
)
def test_tags_starting_with_dot_or_dash_are_refused(first: str, rest: str) -> None:
    assert_tag_invalid(first + rest)


@PROPERTY
@given(
    tag=st.from_regex(TAG_GRAMMAR, fullmatch=True),
    tail=st.text(alphabet=ALNUM + UPPER + "._-", max_size=100),
)
def test_tags_over_128_characters_are_refused(tag: str, tail: str) -> None:
    tag = tag + "x" * max(0, 129 - len(tag)) + tail
    assert len(tag) > 128
    assert_tag_invalid(tag)


@PROPERTY
@given(text=st.text(max_size=200) | st.text(alphabet=ALNUM + UPPER + "._-:/", max_size=200))
def test_arbitrary_text_is_a_tag_exactly_when_it_matches_the_grammar(text: str) -> None:
    expected = TAG_GRAMMAR.fullmatch(text) is not None
    assert is_valid_tag(text) is expected
    try:
        assert parse_tag(text) == text
    except RegistryError as error:
        assert error.code is ErrorCode.MANIFEST_INVALID
        assert not expected
    else:
        assert expected
