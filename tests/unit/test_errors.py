"""Error codes and the OCI error envelope."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.errors import ErrorCode, RegistryError

# The distribution spec's error codes (section "Error Codes"); Moorage may add, never rename.
SPEC_CODES = {
    "BLOB_UNKNOWN": 404,
    "BLOB_UPLOAD_INVALID": 400,
    "BLOB_UPLOAD_UNKNOWN": 404,
    "DIGEST_INVALID": 400,
    "MANIFEST_BLOB_UNKNOWN": 400,
    "MANIFEST_INVALID": 400,
    "MANIFEST_UNKNOWN": 404,
    "NAME_INVALID": 400,
    "NAME_UNKNOWN": 404,
    "SIZE_INVALID": 400,
    "UNAUTHORIZED": 401,
    "DENIED": 403,
    "UNSUPPORTED": 405,
    "TOOMANYREQUESTS": 429,
}


@pytest.mark.parametrize(("name", "status"), sorted(SPEC_CODES.items()))
def test_spec_codes_exist_with_their_status(name: str, status: int) -> None:
    code = ErrorCode[name]
    assert code.status == status
    assert code.wire_name == name


def test_every_code_has_a_message_and_an_error_status() -> None:
    assert len({code.name for code in ErrorCode}) == len(list(ErrorCode))
    for code in ErrorCode:
        assert isinstance(code.default_message, str)
        assert code.default_message
        assert 400 <= code.status <= 599


def test_extra_codes() -> None:
    assert "TAG_INVALID" not in ErrorCode.__members__  # Docker's, not the spec's
    assert ErrorCode.PAGINATION_NUMBER_INVALID.status == 400
    assert ErrorCode.RANGE_INVALID.status == 416
    assert ErrorCode.UNKNOWN.status == 500
    assert ErrorCode.UNAVAILABLE.status == 503


def test_manifest_too_big_is_size_invalid_on_the_wire() -> None:
    assert ErrorCode.MANIFEST_TOO_BIG.status == 413
    assert ErrorCode.MANIFEST_TOO_BIG.wire_name == "SIZE_INVALID"
    wire_names = [code.wire_name for code in ErrorCode]
    assert wire_names.count("SIZE_INVALID") == 2
    assert [c.wire_name for c in ErrorCode if c is not ErrorCode.MANIFEST_TOO_BIG] == [
        c.name for c in ErrorCode if c is not ErrorCode.MANIFEST_TOO_BIG
    ]


def test_registry_error_defaults() -> None:
    error = RegistryError(ErrorCode.BLOB_UNKNOWN)
    assert isinstance(error, Exception)
    assert error.code is ErrorCode.BLOB_UNKNOWN
    assert error.message == "blob unknown to registry"
    assert error.detail is None
    assert error.status == 404
    assert error.headers == {}
    assert str(error) == "BLOB_UNKNOWN: blob unknown to registry"
    assert error.envelope() == {
        "errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": {}}]
    }


def test_registry_error_overrides() -> None:
    error = RegistryError(
        ErrorCode.UNAUTHORIZED,
        "login first",
        {"scope": "repository:x:pull"},
        status=403,
        headers={"WWW-Authenticate": 'Basic realm="moorage"'},
    )
    assert error.message == "login first"
    assert error.status == 403
    assert error.headers == {"WWW-Authenticate": 'Basic realm="moorage"'}
    assert str(error) == "UNAUTHORIZED: login first"
    assert error.envelope() == {
        "errors": [
            {
                "code": "UNAUTHORIZED",
                "message": "login first",
                "detail": {"scope": "repository:x:pull"},
            }
        ]
    }


def test_empty_message_falls_back_to_default() -> None:
    assert RegistryError(ErrorCode.DENIED, "").message == ErrorCode.DENIED.default_message


def test_falsy_detail_other_than_none_is_kept() -> None:
    assert RegistryError(ErrorCode.UNKNOWN, detail=[]).envelope()["errors"][0]["detail"] == []
    assert RegistryError(ErrorCode.UNKNOWN, detail=0).envelope()["errors"][0]["detail"] == 0


def test_headers_are_not_shared_between_instances() -> None:
    a = RegistryError(ErrorCode.UNKNOWN)
    b = RegistryError(ErrorCode.UNKNOWN)
    a.headers["X"] = "1"
    assert b.headers == {}


def test_manifest_too_big_envelope() -> None:
    error = RegistryError(ErrorCode.MANIFEST_TOO_BIG, detail={"limit": 4})
    assert error.status == 413
    assert error.envelope()["errors"][0]["code"] == "SIZE_INVALID"
    assert str(error).startswith("MANIFEST_TOO_BIG: ")


def test_can_be_raised_and_caught() -> None:
    with pytest.raises(RegistryError, match="NAME_UNKNOWN"):
        raise RegistryError(ErrorCode.NAME_UNKNOWN)


json_details = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(), c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(list(ErrorCode)),
    message=st.none() | st.text(),
    detail=json_details,
)
def test_envelope_is_json_serialisable_and_well_shaped(
    code: ErrorCode, message: str | None, detail: object
) -> None:
    envelope = RegistryError(code, message, detail).envelope()
    assert json.loads(json.dumps(envelope)) == envelope
    assert list(envelope) == ["errors"]
    [entry] = envelope["errors"]
    assert set(entry) == {"code", "message", "detail"}
    assert entry["code"] == code.wire_name
    assert entry["message"] == (message or code.default_message)
    assert entry["detail"] == ({} if detail is None else detail)


def test_echoed_client_input_is_bounded() -> None:
    huge = "a" * 100_000
    error = RegistryError(
        ErrorCode.MANIFEST_INVALID, f"bad media type {huge}", {"tag": huge, "list": [huge]}
    )
    body = json.dumps(error.envelope())
    assert len(body) < 2000
    assert error.detail["tag"].startswith("a" * 256)
