"""The documented nginx layout (docs/deploy/nginx.conf, run as written but for ports, paths
and certificates) in front of ``moorage serve`` with ``proxy.trusted``: clients verify nginx's
certificate, uploads stream through unbuffered, and Moorage answers with URLs that lead back
to nginx, never to itself."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import bcrypt
import httpx
import pytest

from .nginx import DOCUMENTED_CONF, NginxServer, moorage_behind_nginx, running
from .support import RegistryServer, Tool, describe_response, sha256_digest
from .tls import Pki, make_pki, skopeo_round_trip

pytestmark = pytest.mark.e2e

CHUNK = 64 * 1024
STREAMED_BYTES = 8 * 1024 * 1024 + 123  # not a multiple of anything nginx buffers by


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("nginx-pki"))


# As docs/deploy/nginx.md says: believe X-Forwarded-* from nginx on this host.
TRUST_NGINX = 'proxy:\n  trusted: ["127.0.0.1"]\n'
USER, PASSWORD = "alice", "correct horse battery staple"


def write_htpasswd(path: Path) -> Path:
    """A bcrypt htpasswd file (what ``htpasswd -B`` writes), read by nginx or Moorage."""
    path.write_text(
        f"{USER}:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
    )
    return path


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """Moorage without authentication, as nginx's variant A expects (and the plain tests use)."""
    server = moorage_behind_nginx(tmp_path_factory.mktemp("nginx-backend"), TRUST_NGINX)
    with running(server):
        yield server


@pytest.fixture(scope="module")
def nginx(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, backend: RegistryServer
) -> Iterator[NginxServer]:
    server = NginxServer(tmp_path_factory.mktemp("nginx"), pki, backend.port)
    with running(server):
        yield server


def test_skopeo_copies_in_and_out_through_nginx(
    nginx: NginxServer, backend: RegistryServer, tmp_path: Path
) -> None:
    skopeo = Tool("skopeo", registry=backend)
    image = skopeo_round_trip(skopeo, nginx.host, nginx.pki.cert_dir, tmp_path, "proxied/demo")
    # It really went through nginx (which logged it) into the backend's storage.
    access_log = (nginx.prefix / "access.log").read_text()
    assert '"PUT /v2/proxied/demo/manifests/v1 ' in access_log
    assert '"GET /v2/proxied/demo/manifests/v1 ' in access_log
    with backend.client() as direct:
        response = direct.head(f"/v2/proxied/demo/blobs/{image.layers[0].digest}")
    assert response.status_code == 200, describe_response(response)


def assert_leads_to_nginx(location: str, nginx: NginxServer, backend: RegistryServer) -> str:
    """A Location must resolve against nginx's URL to nginx, never name the backend."""
    assert backend.host not in location, location
    assert location.startswith(("/", f"{nginx.url}/")), location
    return urljoin(f"{nginx.url}/", location)


def stream(size: int) -> Iterator[bytes]:
    """``size`` bytes in pieces, as a client streaming a layer of unknown length sends them."""
    block = hashlib.sha256(b"streamed through nginx").digest() * (CHUNK // 32)
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece


def test_streamed_upload_without_length_is_stored_with_the_right_digest(
    nginx: NginxServer, backend: RegistryServer
) -> None:
    body = b"".join(stream(STREAMED_BYTES))
    digest = sha256_digest(body)
    with nginx.client() as client:
        started = client.post("/v2/proxied/streamed/blobs/uploads/")
        assert started.status_code == 202, describe_response(started)
        upload = assert_leads_to_nginx(started.headers["location"], nginx, backend)

        # A generator body has no length: httpx sends Transfer-Encoding: chunked.
        patched = client.patch(
            upload,
            content=stream(STREAMED_BYTES),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert "content-length" not in patched.request.headers
        assert patched.request.headers["transfer-encoding"] == "chunked"
        assert patched.status_code == 202, describe_response(patched)
        assert patched.headers["range"] == f"0-{STREAMED_BYTES - 1}"
        upload = assert_leads_to_nginx(patched.headers["location"], nginx, backend)

        closed = client.put(upload, params={"digest": digest})
        assert closed.status_code == 201, describe_response(closed)
        assert closed.headers["docker-content-digest"] == digest
        blob = assert_leads_to_nginx(closed.headers["location"], nginx, backend)

        fetched = client.get(blob)
    assert fetched.status_code == 200, describe_response(fetched)
    assert fetched.headers["docker-content-digest"] == digest
    assert sha256_digest(fetched.content) == digest


def test_wrong_digest_through_nginx_is_refused_and_nothing_stored(nginx: NginxServer) -> None:
    with nginx.client() as client:
        started = client.post("/v2/proxied/wrong/blobs/uploads/")
        assert started.status_code == 202, describe_response(started)
        claimed = sha256_digest(b"something else")
        closed = client.put(
            started.headers["location"], params={"digest": claimed}, content=stream(CHUNK * 3)
        )
        assert closed.status_code == 400, describe_response(closed)
        assert closed.json()["errors"][0]["code"] == "DIGEST_INVALID"
        assert client.head(f"/v2/proxied/wrong/blobs/{claimed}").status_code == 404


def test_api_version_header_once_on_moorage_and_nginx_answers(nginx: NginxServer) -> None:
    with nginx.client() as client:
        from_moorage = client.get("/v2/")
        from_nginx = client.get("/not-the-registry")
    assert from_moorage.status_code == 200
    assert from_moorage.headers.get_list("docker-distribution-api-version") == ["registry/2.0"]
    assert from_nginx.status_code == 404
    assert from_nginx.headers.get_list("docker-distribution-api-version") == ["registry/2.0"]


def test_ping_and_health_routes_are_proxied(nginx: NginxServer) -> None:
    with nginx.client() as client:
        for path in ("/_ping", "/v1/_ping", "/healthz", "/readyz", "/v2"):
            response = client.get(path)
            assert response.status_code == 200, describe_response(response)


def test_plain_http_only_redirects_to_https(nginx: NginxServer) -> None:
    response = httpx.get(f"http://127.0.0.1:{nginx.http_port}/v2/", timeout=10.0)
    assert response.status_code == 301
    assert response.headers["location"].startswith("https://")


# ---- who checks passwords (docs/deploy/nginx.md, section 3) -----------------------------------


@pytest.fixture(scope="module")
def moorage_auth(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[tuple[RegistryServer, NginxServer]]:
    """Variant B: Moorage checks passwords (auth.htpasswd) and runs the token flow."""
    workdir = tmp_path_factory.mktemp("nginx-auth-backend")
    htpasswd = write_htpasswd(workdir / "htpasswd")
    server = moorage_behind_nginx(workdir, TRUST_NGINX + f"auth:\n  htpasswd: {htpasswd}\n")
    with running(server):
        proxy = NginxServer(tmp_path_factory.mktemp("nginx-auth"), pki, server.port)
        with running(proxy):
            yield server, proxy


def test_moorage_token_realm_names_nginx(moorage_auth: tuple[RegistryServer, NginxServer]) -> None:
    """Behind nginx, clients must be sent to https://<nginx>/token; the very same backend asked
    directly names itself, so it is the trusted proxy's headers that make the difference."""
    backend, proxy = moorage_auth
    with proxy.client() as client:
        challenge = client.get("/v2/")
    assert challenge.status_code == 401, describe_response(challenge)
    assert f'realm="{proxy.url}/token"' in challenge.headers["www-authenticate"]
    with backend.client() as direct:
        challenge = direct.get("/v2/")
    assert f'realm="{backend.url}/token"' in challenge.headers["www-authenticate"]


def test_skopeo_logs_in_through_nginx_to_moorage(
    moorage_auth: tuple[RegistryServer, NginxServer], tmp_path: Path
) -> None:
    backend, proxy = moorage_auth
    skopeo = Tool("skopeo", registry=backend)
    creds = f"{USER}:{PASSWORD}"
    skopeo_round_trip(skopeo, proxy.host, proxy.pki.cert_dir, tmp_path, "auth/b", creds=creds)
    refused = skopeo(
        "inspect",
        "--tls-verify=true",
        "--cert-dir",
        proxy.pki.cert_dir,
        "--creds",
        f"{USER}:wrong",
        f"docker://{proxy.host}/auth/b:v1",
        check=False,
    )
    assert refused.returncode != 0


@pytest.fixture(scope="module")
def nginx_auth(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki, backend: RegistryServer
) -> Iterator[NginxServer]:
    """Variant A, the 2014 layout: the commented auth_basic lines switched on, in front of a
    Moorage without authentication."""
    prefix = tmp_path_factory.mktemp("nginx-basic")
    htpasswd = write_htpasswd(prefix / "moorage.htpasswd")
    variant = {
        '# auth_basic "moorage";': 'auth_basic "moorage";',
        "# auth_basic_user_file /etc/nginx/moorage.htpasswd;": f"auth_basic_user_file {htpasswd};",
    }
    server = NginxServer(prefix, pki, backend.port, variant)
    with running(server):
        yield server


def test_nginx_basic_auth_variant(
    nginx_auth: NginxServer, backend: RegistryServer, tmp_path: Path
) -> None:
    with nginx_auth.client() as client:
        anonymous = client.get("/v2/")
        wrong = client.get("/v2/", auth=(USER, "wrong"))
        right = client.get("/v2/", auth=(USER, PASSWORD))
    for refused in (anonymous, wrong):
        assert refused.status_code == 401, describe_response(refused)
        assert refused.headers["www-authenticate"].startswith("Basic")
        # nginx's own 401 still says "registry", or clients would not try to log in.
        assert refused.headers["docker-distribution-api-version"] == "registry/2.0"
    assert right.status_code == 200, describe_response(right)
    skopeo = Tool("skopeo", registry=backend)
    creds = f"{USER}:{PASSWORD}"
    skopeo_round_trip(
        skopeo, nginx_auth.host, nginx_auth.pki.cert_dir, tmp_path, "auth/a", creds=creds
    )


# ---- pulls sent by nginx: storage.accel_redirect and the internal location -------------------

ACCEL_PREFIX = "/_moorage_blobs/"
ACCEL_BEGIN, ACCEL_END = "# >>> accel_redirect", "# <<< accel_redirect"
DOCUMENTED_BLOBS_DIR = "/var/lib/moorage/blobs/"
ACCEL_POLICY = f"""
rules:
  - repositories: ["accel/*"]
    users: [{USER}]
    actions: [pull, push]
"""
ACCEL_BYTES = hashlib.sha256(b"sent by nginx").digest() * (3 * 1024 * 1024 // 32) + b"tail!"
BASIC = (USER, PASSWORD)


def accel_variant(conf: str, blobs_dir: Path) -> dict[str, str]:
    """Replacements that switch on the commented blocks between the accel_redirect markers of
    docs/deploy/nginx.conf (the X-Sendfile-Type header and the internal location), with the
    location aliased to ``blobs_dir``."""
    variant = {}
    begin = conf.find(ACCEL_BEGIN)
    while begin >= 0:
        end = conf.find(ACCEL_END, begin)
        assert end > begin, "an accel_redirect block of docs/deploy/nginx.conf has no end"
        block = conf[begin:end]
        lines = block.splitlines(keepends=True)[1:]  # the marker line stays a comment
        switched_on = "".join(line.replace("# ", "", 1) for line in lines)
        switched_on = switched_on.replace(DOCUMENTED_BLOBS_DIR, f"{blobs_dir}/")
        variant[block] = ACCEL_BEGIN + "\n" + switched_on
        begin = conf.find(ACCEL_BEGIN, end)
    assert len(variant) == 2, "docs/deploy/nginx.conf lost an accel_redirect block"
    assert any(str(blobs_dir) in on for on in variant.values())
    return variant


@pytest.fixture(scope="module")
def accel(
    tmp_path_factory: pytest.TempPathFactory, pki: Pki
) -> Iterator[tuple[RegistryServer, NginxServer]]:
    """Moorage with auth and storage.accel_redirect, behind the documented nginx with the
    internal location switched on."""
    workdir = tmp_path_factory.mktemp("nginx-accel-backend")
    htpasswd = write_htpasswd(workdir / "htpasswd")
    policy = workdir / "policy.yaml"
    policy.write_text(ACCEL_POLICY)
    server = moorage_behind_nginx(
        workdir,
        TRUST_NGINX
        + f"auth:\n  htpasswd: {htpasswd}\n  policy_file: {policy}\n"
        + f"storage:\n  accel_redirect: {ACCEL_PREFIX}\n",
    )
    with running(server):
        variant = accel_variant(DOCUMENTED_CONF.read_text(), server.data_dir / "blobs")
        proxy = NginxServer(tmp_path_factory.mktemp("nginx-accel"), pki, server.port, variant)
        with running(proxy):
            yield server, proxy


@pytest.fixture(scope="module")
def accel_blob(accel: tuple[RegistryServer, NginxServer]) -> str:
    """ACCEL_BYTES pushed through nginx into accel/app; its digest."""
    _, proxy = accel
    digest = sha256_digest(ACCEL_BYTES)
    with proxy.client() as client:
        pushed = client.post(
            "/v2/accel/app/blobs/uploads/",
            params={"digest": digest},
            content=ACCEL_BYTES,
            auth=BASIC,
        )
    assert pushed.status_code in (201, 202), describe_response(pushed)
    if pushed.status_code == 202:  # no single-POST upload: finish with PUT
        with proxy.client() as client:
            done = client.put(
                pushed.headers["location"],
                params={"digest": digest},
                content=ACCEL_BYTES,
                auth=BASIC,
            )
        assert done.status_code == 201, describe_response(done)
    return digest


def test_accel_skopeo_round_trip_is_sent_by_nginx(
    accel: tuple[RegistryServer, NginxServer], tmp_path: Path
) -> None:
    backend, proxy = accel
    skopeo = Tool("skopeo", registry=backend)
    creds = f"{USER}:{PASSWORD}"
    image = skopeo_round_trip(skopeo, proxy.host, proxy.pki.cert_dir, tmp_path, "accel/demo", creds)
    layer = image.layers[0]
    # Moorage itself answers what nginx passes on with the redirect and no bytes...
    with backend.client() as direct:
        answer = direct.get(
            f"/v2/accel/demo/blobs/{layer.digest}",
            auth=BASIC,
            headers={"X-Sendfile-Type": "X-Accel-Redirect"},
        )
    assert answer.status_code == 200, describe_response(answer)
    assert answer.content == b""
    encoded = layer.digest.split(":", 1)[1]
    assert answer.headers["x-accel-redirect"] == f"{ACCEL_PREFIX}sha256/{encoded[:2]}/{encoded}"
    # ...and nginx sent skopeo the layer's bytes (the access log counts the body it sent).
    sent = [
        line
        for line in (proxy.prefix / "access.log").read_text().splitlines()
        if f'"GET /v2/accel/demo/blobs/{layer.digest} ' in line
    ]
    assert sent, "skopeo's layer GET is not in nginx's access log"
    assert any(f'" 200 {layer.size} ' in line for line in sent), sent


def test_accel_pull_is_byte_for_byte_with_the_registry_headers(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str
) -> None:
    _, proxy = accel
    with proxy.client() as client:
        got = client.get(f"/v2/accel/app/blobs/{accel_blob}", auth=BASIC)
    assert got.status_code == 200, describe_response(got)
    assert got.content == ACCEL_BYTES
    assert "x-accel-redirect" not in got.headers
    assert got.headers["content-length"] == str(len(ACCEL_BYTES))
    assert got.headers["docker-content-digest"] == accel_blob
    assert got.headers["etag"] == f'"{accel_blob}"'
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["cache-control"] == "max-age=31536000"
    assert got.headers["accept-ranges"] == "bytes"
    assert got.headers.get_list("docker-distribution-api-version") == ["registry/2.0"]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=100-199", 100, 199),
        ("bytes=1048576-", 1048576, len(ACCEL_BYTES) - 1),
        ("bytes=-10", len(ACCEL_BYTES) - 10, len(ACCEL_BYTES) - 1),
    ],
)
def test_accel_range_gets_206_with_the_right_bytes(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str, header: str, first: int, last: int
) -> None:
    _, proxy = accel
    with proxy.client() as client:
        got = client.get(f"/v2/accel/app/blobs/{accel_blob}", headers={"Range": header}, auth=BASIC)
    assert got.status_code == 206, describe_response(got)
    assert got.content == ACCEL_BYTES[first : last + 1]
    assert got.headers["content-range"] == f"bytes {first}-{last}/{len(ACCEL_BYTES)}"
    assert got.headers["docker-content-digest"] == accel_blob


def test_accel_several_ranges_or_a_bad_one_are_answered_as_moorage_does(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str
) -> None:
    _, proxy = accel
    url = f"/v2/accel/app/blobs/{accel_blob}"
    with proxy.client() as client:
        several = client.get(url, headers={"Range": "bytes=0-1,5-6"}, auth=BASIC)
        bad = client.get(url, headers={"Range": f"bytes={len(ACCEL_BYTES)}-"}, auth=BASIC)
    assert several.status_code == 200 and several.content == ACCEL_BYTES
    assert bad.status_code == 416, describe_response(bad)
    assert bad.json()["errors"][0]["code"] == "RANGE_INVALID"


@pytest.mark.parametrize("caller", ["anonymous", "wrong password", "other repository", "unlinked"])
def test_accel_refused_callers_get_no_bytes(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str, caller: str
) -> None:
    _, proxy = accel
    repository, auth, statuses = {
        "anonymous": ("accel/app", None, {401}),
        "wrong password": ("accel/app", (USER, "wrong"), {401}),
        "other repository": ("secret/app", BASIC, {401, 403}),
        "unlinked": ("accel/other", BASIC, {404}),
    }[caller]
    with proxy.client() as client:
        got = client.get(f"/v2/{repository}/blobs/{accel_blob}", auth=auth)
    assert got.status_code in statuses, describe_response(got)
    assert "x-accel-redirect" not in got.headers
    assert len(got.content) < 4096 and ACCEL_BYTES[:64] not in got.content


def test_accel_internal_location_is_404_for_clients(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str
) -> None:
    _, proxy = accel
    encoded = accel_blob.split(":", 1)[1]
    with proxy.client() as client:
        for path in (f"{ACCEL_PREFIX}sha256/{encoded[:2]}/{encoded}", ACCEL_PREFIX):
            for auth in (None, BASIC):
                got = client.get(path, auth=auth)
                assert got.status_code == 404, describe_response(got)
                assert ACCEL_BYTES[:64] not in got.content


def test_accel_a_client_that_reaches_moorage_directly_still_gets_the_bytes(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str
) -> None:
    """Only requests nginx passed on (X-Sendfile-Type) are redirected: a job on the host that
    talks to 127.0.0.1:5000 itself is sent the blob by Moorage."""
    backend, _ = accel
    with backend.client() as direct:
        got = direct.get(f"/v2/accel/app/blobs/{accel_blob}", auth=BASIC)
    assert got.status_code == 200, describe_response(got)
    assert "x-accel-redirect" not in got.headers
    assert got.content == ACCEL_BYTES


def test_accel_head_is_answered_by_moorage(
    accel: tuple[RegistryServer, NginxServer], accel_blob: str
) -> None:
    _, proxy = accel
    with proxy.client() as client:
        head = client.head(f"/v2/accel/app/blobs/{accel_blob}", auth=BASIC)
    assert head.status_code == 200, describe_response(head)
    assert head.headers["content-length"] == str(len(ACCEL_BYTES))
    assert head.headers["docker-content-digest"] == accel_blob
    assert head.content == b""
