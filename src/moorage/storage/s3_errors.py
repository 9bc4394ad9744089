"""What an S3 failure means to an operator: obstore's errors named plainly. Pure logic.

obstore raises a few exception classes whose text carries the S3 error code and the HTTP
status; the classification below reads those, so that "no such bucket", "access denied",
"wrong region", "unreachable" and "slow down" reach the operator (and the client as a retryable
5xx) instead of a Rust debug dump.
"""

from __future__ import annotations

import re

from moorage.storage.port import StorageThrottled, StorageUnavailable

# The S3 error code: in the XML body obstore quotes, or as "(code: X)" for a failed key of a
# batch DeleteObjects.
_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>|\(code: ([A-Za-z]+)\)")
_STATUS = re.compile(r"status code: (\d{3})")
# obstore's (object_store's) words when it gives up: "... in 50ms, after 3 retries, ...".
_RETRIES = re.compile(r"after (\d+) retries")

_DENIED = {
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_REGION = {
    "PermanentRedirect",
    "AuthorizationHeaderMalformed",
    "IllegalLocationConstraintException",
}
_THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
_UNREACHABLE = ("error sending request", "dns error", "connection refused", "timed out")


def s3_error_code(text: str) -> str | None:
    match = _CODE.search(text)
    return (match.group(1) or match.group(2)) if match else None


def is_missing_key(text: str) -> bool:
    """A 404 for the object itself (not for the bucket)."""
    return s3_error_code(text) in (None, "NoSuchKey", "NoSuchUpload")


def classify(text: str, bucket: str, endpoint: str) -> StorageUnavailable:
    """The exception to raise for an S3 failure whose message is ``text``, with the retries
    the client made before it gave up."""
    error = _classify(text, bucket, endpoint)
    retries = _RETRIES.search(text)
    if retries:
        error.retries = int(retries.group(1))
    return error


def _classify(text: str, bucket: str, endpoint: str) -> StorageUnavailable:
    code = s3_error_code(text)
    status_match = _STATUS.search(text)
    status = int(status_match.group(1)) if status_match else None
    lowered = text.lower()
    if code == "NoSuchBucket":
        return StorageUnavailable(f"no such bucket: {bucket!r} at {endpoint}")
    if code in _DENIED or status == 403 or "permission denied" in lowered:
        return StorageUnavailable(f"access denied to bucket {bucket!r} (check the credentials)")
    if code in _REGION or status == 301:
        return StorageUnavailable(f"wrong region for bucket {bucket!r} (set storage.s3.region)")
    if code in _THROTTLED or status == 503:
        return StorageThrottled(f"{endpoint} asked us to slow down (bucket {bucket!r})")
    if any(marker in lowered for marker in _UNREACHABLE):
        return StorageUnavailable(f"endpoint unreachable: {endpoint}")
    if status is not None and status >= 500:
        return StorageUnavailable(f"{endpoint} failed with HTTP {status} (bucket {bucket!r})")
    return StorageUnavailable(f"S3 request failed: {code or 'unknown error'} (bucket {bucket!r})")
