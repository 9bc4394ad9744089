"""The request log: one line per request with the documented fields, the request id shared with
the response and the error boundary, and never a secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from moorage.auth.htpasswd import add_user
from moorage.services.manifests import ManifestService
from moorage.telemetry import line_writer
from tests.api.support import ClientFactory, digest_of, error_code, push_blob, push_image

FIELDS = {"request_id", "client", "method", "route", "status", "bytes_in", "bytes_out",
          "duration_ms"}  # fmt: skip


@pytest.fixture(autouse=True)
def unbatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each line written at once (they are batched for speed; see test_line_writer.py)."""
    monkeypatch.setattr(line_writer, "BATCH", 1)


def request_lines(captured: str) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in captured.splitlines() if line.startswith("{")]
    return [record for record in records if record["message"] == "request"]


async def test_one_json_line_per_request_with_its_fields(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client(log={"format": "json"}) as client:
        await push_image(client, "team/app", "v1")
        capsys.readouterr()
        got = await client.get("/v2/team/app/manifests/v1")
        missing = await client.get("/v2/team/app/manifests/nope")
        await client.get("/healthz")
    lines = request_lines(capsys.readouterr().err)
    assert len(lines) == 3
    ok, unknown, health = lines
    assert set(ok) >= FIELDS
    assert ok["request_id"] == got.headers["x-request-id"]
    assert (ok["method"], ok["route"], ok["repository"]) == (
        "GET", "/v2/{name}/manifests/{reference}", "team/app",
    )  # fmt: skip
    assert (ok["status"], ok["bytes_out"], ok["client"]) == (200, len(got.content), "127.0.0.1")
    assert "error" not in ok and "user" not in ok  # no auth: nobody to name
    assert ok["level"] == "info" and ok["time"].endswith("Z")
    assert (unknown["status"], unknown["error"]) == (404, "MANIFEST_UNKNOWN")
    assert unknown["request_id"] == missing.headers["x-request-id"] != ok["request_id"]
    assert (health["route"], health["status"]) == ("/healthz", 200)
    assert "repository" not in health


async def test_text_lines_by_default(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client() as client:
        capsys.readouterr()
        wrong = "sha256:" + "0" * 64  # read, hashed, refused
        response = await client.post(f"/v2/a/blobs/uploads/?digest={wrong}", content=b"x")
    [line] = [line for line in capsys.readouterr().err.splitlines() if " request " in line]
    assert " info request " in line
    assert f"request_id={response.headers['x-request-id']} " in line
    assert "route=/v2/{name}/blobs/uploads/ " in line
    assert "status=400 " in line and "bytes_in=1 " in line and line.endswith("DIGEST_INVALID")


async def test_an_incoming_request_id_is_honoured_from_trusted_proxies_only(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    given = {"X-Request-ID": "edge-1234"}
    async with make_client(log={"format": "json"}) as client:
        untrusted = await client.get("/v2/", headers=given)
    async with make_client(log={"format": "json"}, proxy={"trusted": ["127.0.0.1"]}) as client:
        trusted = await client.get("/v2/", headers=given)
        garbage = await client.get("/v2/", headers={"X-Request-ID": "a b\tc"})
    assert untrusted.headers["x-request-id"] != "edge-1234"
    assert trusted.headers["x-request-id"] == "edge-1234"
    assert len(garbage.headers["x-request-id"]) == 32  # unfit to log: a fresh one instead
    ids = [line["request_id"] for line in request_lines(capsys.readouterr().err)]
    assert ids[-3:] == [untrusted.headers["x-request-id"], "edge-1234", ids[-1]]


async def test_an_unhandled_error_shares_its_id_with_the_client_and_the_traceback(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("internal detail the client must not see")

    monkeypatch.setattr(ManifestService, "get", explode)
    async with make_client(log={"format": "json"}) as client:
        capsys.readouterr()
        response = await client.get("/v2/team/app/manifests/v1")
    assert response.status_code == 500
    assert "internal detail" not in response.text
    request_id = response.headers["x-request-id"]
    assert response.json()["errors"][0]["detail"] == {"request_id": request_id}
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [failure] = [record for record in records if record["message"] == "unhandled error"]
    assert failure["request_id"] == request_id
    assert "internal detail the client must not see" in failure["traceback"]
    [line] = request_lines("\n".join(json.dumps(record) for record in records))
    assert (line["request_id"], line["status"], line["error"]) == (request_id, 500, "UNKNOWN")


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    add_user(path, "alice", "alice-Pa55word")
    return path


async def test_no_password_token_or_authorization_header_is_logged(
    make_client: ClientFactory, htpasswd: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "alice-Pa55word"
    async with make_client(log={"format": "json"}, auth={"htpasswd": htpasswd}) as client:
        capsys.readouterr()
        basic = await client.get("/v2/", auth=("alice", password))
        wrong = await client.get("/v2/", auth=("alice", "wrong-Pa55word"))
        grant = await client.get("/token?service=moorage&scope=repository:a/b:pull,push",
                                 auth=("alice", password))  # fmt: skip
        token = grant.json()["token"]
        bearer = await client.get("/v2/a/b/tags/list", headers={"Authorization": f"Bearer {token}"})
        form = await client.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": password,
                  "service": "moorage", "access_type": "offline"},
        )  # fmt: skip
        refresh = form.json()["refresh_token"]
        await client.post("/token", data={"grant_type": "refresh_token", "service": "moorage",
                                          "refresh_token": refresh})  # fmt: skip
    assert (basic.status_code, wrong.status_code, bearer.status_code) == (200, 401, 404)
    captured = capsys.readouterr().err
    encoded = base64.b64encode(f"alice:{password}".encode()).decode()
    for secret in (password, "wrong-Pa55word", encoded, token, refresh, "Basic ", "Bearer "):
        assert secret not in captured
    lines = request_lines(captured)
    assert len(lines) == 6
    assert [line.get("user") for line in lines] == ["alice", None, "alice", "alice", "alice", None]
    assert lines[1]["error"] == "UNAUTHORIZED"


@pytest.mark.parametrize("backend", ["s3-redirect"])
async def test_no_presigned_url_is_logged(
    capsys: pytest.CaptureFixture[str], client: httpx.AsyncClient
) -> None:
    digest = await push_blob(client, "team/app", b"redirected bytes")
    capsys.readouterr()
    got = await client.get(f"/v2/team/app/blobs/{digest}")
    assert got.content == b"redirected bytes" and got.history
    location = got.history[0].headers["location"]
    signature = parse_qs(urlsplit(location).query)["X-Amz-Signature"][0]
    captured = capsys.readouterr().err
    assert signature not in captured and "X-Amz" not in captured
    assert f"/v2/team/app/blobs/{digest_of(b'redirected bytes')}" not in captured
    assert " status=307 " in captured


async def test_warning_level_silences_request_lines(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    async with make_client(log={"level": "warning"}) as client:
        response = await client.get("/v2/nothing/manifests/v1")
    assert error_code(response) == "MANIFEST_UNKNOWN"
    assert response.headers["x-request-id"]  # the id is still given
    assert " request " not in capsys.readouterr().err


async def test_routes_the_router_or_the_direct_path_answers_log_alike(
    make_client: ClientFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """/v2/<path> requests skip Starlette's router (api.server.DirectRoutes); an unknown
    path, a method no route has and the routes listed before the catch-all still get the
    router's answers, the envelope, both fixed headers and the same route labels."""
    async with make_client(log={"format": "json"}) as client:
        capsys.readouterr()
        unknown = await client.get("/v2/a/b/nothing-here")
        catalog_post = await client.post("/v2/_catalog")
        trace = await client.request("TRACE", "/v2/a/tags/list")
        root = await client.get("/v2/")
    lines = request_lines(capsys.readouterr().err)
    assert [(line["route"], line["status"]) for line in lines] == [
        ("/v2/{path:path}", 404),
        ("/v2/{path:path}", 404),
        ("/v2/{path:path}", 405),
        ("/v2/", 200),
    ]
    assert error_code(unknown) == error_code(catalog_post) == "NAME_UNKNOWN"
    assert error_code(trace) == "UNSUPPORTED"
    for response, line in zip((unknown, catalog_post, trace, root), lines, strict=True):
        assert response.headers["docker-distribution-api-version"] == "registry/2.0"
        assert response.headers["x-request-id"] == line["request_id"]
