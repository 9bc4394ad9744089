"""storage.accel_redirect: an authorized blob GET that nginx passed on (X-Sendfile-Type) is
answered with X-Accel-Redirect and no body, for nginx to send the file; everything else (HEAD,
refusals, unknown blobs, bad ranges, requests that did not come through nginx) is answered as
without it. tests/e2e/test_nginx.py runs the same through a real nginx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from moorage.auth.htpasswd import add_user
from tests.api.support import ClientFactory, digest_of, error_code, push_blob

PREFIX = "/_moorage_blobs/"
# What the documented nginx.conf sends with every request it passes on.
VIA_NGINX = {"X-Sendfile-Type": "X-Accel-Redirect"}
DATA = bytes(range(256)) * 40  # 10240 bytes
POLICY = """
admins: [root]
rules:
  - repositories: ["team/*"]
    users: [alice]
    actions: [pull]
"""


@pytest.fixture
def accel(storage: dict[str, Any]) -> dict[str, Any]:
    return {**storage, "accel_redirect": PREFIX}


def blob_file(storage: dict[str, Any], accel_uri: str) -> Path:
    """The file an X-Accel-Redirect URI names, as nginx's `alias <data_dir>/blobs/` maps it."""
    assert accel_uri.startswith(PREFIX)
    return Path(storage["data_dir"]) / "blobs" / accel_uri.removeprefix(PREFIX)


async def test_get_names_the_blob_file_for_nginx_and_sends_no_bytes(
    make_client: ClientFactory, accel: dict[str, Any]
) -> None:
    async with make_client(storage=accel) as client:
        digest = await push_blob(client, "team/app", DATA)
        got = await client.get(f"/v2/team/app/blobs/{digest}", headers=VIA_NGINX)
    assert got.status_code == 200
    assert got.content == b""
    encoded = digest.removeprefix("sha256:")
    assert got.headers["x-accel-redirect"] == f"{PREFIX}sha256/{encoded[:2]}/{encoded}"
    assert blob_file(accel, got.headers["x-accel-redirect"]).read_bytes() == DATA
    # What nginx keeps (Content-Type, Cache-Control) and what its internal location re-adds
    # from the upstream's answer (Docker-Content-Digest, ETag). nginx announces Accept-Ranges
    # itself for the file, so it is not sent twice.
    assert got.headers["docker-content-digest"] == digest
    assert got.headers["etag"] == f'"{digest}"'
    assert got.headers["cache-control"] == "max-age=31536000"
    assert got.headers["content-type"] == "application/octet-stream"
    assert "accept-ranges" not in got.headers


async def test_sha512_blobs_are_named_under_their_algorithm(
    make_client: ClientFactory, accel: dict[str, Any]
) -> None:
    digest = digest_of(DATA, "sha512")
    async with make_client(storage=accel) as client:
        pushed = await client.post(f"/v2/team/app/blobs/uploads/?digest={digest}", content=DATA)
        assert pushed.status_code == 201, pushed.text
        got = await client.get(f"/v2/team/app/blobs/{digest}", headers=VIA_NGINX)
    encoded = digest.removeprefix("sha512:")
    assert got.headers["x-accel-redirect"] == f"{PREFIX}sha512/{encoded[:2]}/{encoded}"
    assert blob_file(accel, got.headers["x-accel-redirect"]).read_bytes() == DATA


async def test_a_valid_range_goes_to_nginx_and_a_bad_one_is_refused_here(
    make_client: ClientFactory, accel: dict[str, Any]
) -> None:
    async with make_client(storage=accel) as client:
        digest = await push_blob(client, "team/app", DATA)
        url = f"/v2/team/app/blobs/{digest}"
        ranged = await client.get(url, headers={"Range": "bytes=5-9", **VIA_NGINX})
        bad = await client.get(url, headers={"Range": "bytes=99999-", **VIA_NGINX})
    # nginx sees the client's Range header on the internal redirect and answers the 206 itself.
    assert ranged.status_code == 200 and ranged.content == b""
    assert "x-accel-redirect" in ranged.headers
    assert "content-range" not in ranged.headers
    assert bad.status_code == 416
    assert error_code(bad) == "RANGE_INVALID"
    assert "x-accel-redirect" not in bad.headers


async def test_head_is_answered_here_with_the_size(
    make_client: ClientFactory, accel: dict[str, Any]
) -> None:
    async with make_client(storage=accel) as client:
        digest = await push_blob(client, "team/app", DATA)
        head = await client.head(f"/v2/team/app/blobs/{digest}", headers=VIA_NGINX)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(DATA))
    assert head.headers["docker-content-digest"] == digest
    assert "x-accel-redirect" not in head.headers


async def test_unknown_or_unlinked_blobs_get_404_and_no_redirect(
    make_client: ClientFactory, accel: dict[str, Any]
) -> None:
    async with make_client(storage=accel) as client:
        digest = await push_blob(client, "team/secret", DATA)
        unlinked = await client.get(f"/v2/team/app/blobs/{digest}", headers=VIA_NGINX)
        unknown = await client.get(
            f"/v2/team/app/blobs/{digest_of(b'never pushed')}", headers=VIA_NGINX
        )
    for response in (unlinked, unknown):
        assert response.status_code == 404
        assert error_code(response) == "BLOB_UNKNOWN"
        assert "x-accel-redirect" not in response.headers


async def test_refused_callers_get_no_redirect(
    make_client: ClientFactory, accel: dict[str, Any], tmp_path: Path
) -> None:
    htpasswd = tmp_path / "htpasswd"
    for user in ("root", "alice"):
        add_user(htpasswd, user, f"{user}-pw")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    auth = {"htpasswd": htpasswd, "policy_file": policy}
    async with make_client(storage=accel, auth=auth) as client:
        digest = digest_of(DATA)
        for repo in ("team/app", "other/app"):
            pushed = await client.post(
                f"/v2/{repo}/blobs/uploads/?digest={digest}", content=DATA, auth=("root", "root-pw")
            )
            assert pushed.status_code == 201, pushed.text
        url = f"/v2/team/app/blobs/{digest}"
        refused = [
            await client.get(url, headers=VIA_NGINX),
            await client.get(url, auth=("alice", "wrong"), headers=VIA_NGINX),
            await client.get(
                f"/v2/other/app/blobs/{digest}", auth=("alice", "alice-pw"), headers=VIA_NGINX
            ),
        ]
        allowed = await client.get(url, auth=("alice", "alice-pw"), headers=VIA_NGINX)
    for response in refused:
        assert response.status_code in (401, 403), response.text
        assert "x-accel-redirect" not in response.headers
    assert allowed.status_code == 200
    assert "x-accel-redirect" in allowed.headers


async def test_a_request_that_did_not_come_through_nginx_gets_the_bytes(
    make_client: ClientFactory, accel: dict[str, Any]
) -> None:
    async with make_client(storage=accel) as client:
        digest = await push_blob(client, "team/app", DATA)
        plain = await client.get(f"/v2/team/app/blobs/{digest}")
        other = await client.get(
            f"/v2/team/app/blobs/{digest}", headers={"X-Sendfile-Type": "X-Sendfile"}
        )
    for got in (plain, other):
        assert got.status_code == 200
        assert got.content == DATA
        assert "x-accel-redirect" not in got.headers


async def test_without_the_option_bytes_are_sent_as_before(client: httpx.AsyncClient) -> None:
    digest = await push_blob(client, "team/app", DATA)
    got = await client.get(f"/v2/team/app/blobs/{digest}", headers=VIA_NGINX)
    assert got.content == DATA
    assert "x-accel-redirect" not in got.headers
