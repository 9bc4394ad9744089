"""Several nodes, one registry (issue 14): three ``moorage serve`` nodes (2 workers each) on one
PostgreSQL and one S3 bucket behind nginx round-robin with no sticky sessions
(docs/deploy/cluster.md, docs/deploy/nginx-cluster.conf). Any request may land on any node;
a node may die or lose its database; garbage collection runs on one node while others push.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from .cluster import (
    ADMIN,
    ADMIN_PASSWORD,
    FOREIGN_NODE,
    PASSWORD,
    USER,
    Cluster,
    running_cluster,
)
from .support import (
    MT_OCI_CONFIG,
    MT_OCI_LAYER_GZIP,
    MT_OCI_MANIFEST,
    OciLayout,
    RegistryServer,
    Tool,
    canonical_json,
    describe_response,
    describe_run,
    new_image_layout,
    podman_tool,
    sha256_digest,
)
from .tls import skopeo_round_trip

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_WITHIN = 30.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def doomed(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, float]:
    """An image pushed at the start of the module, deleted later by the GC test (so that the
    collector's grace period has passed for its blobs by then); its manifest digest and when."""
    with cluster.client() as client:
        digest = push_small_image(client, "gc/doomed", "v1", b"doomed layer " * 500)
    return digest, time.monotonic()


def skopeo(cluster: Cluster) -> Tool:
    return Tool("skopeo", registry=cluster.nodes[0])


def push_blob(client: httpx.Client, repository: str, data: bytes) -> str:
    digest = sha256_digest(data)
    response = client.post(
        f"/v2/{repository}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, describe_response(response)
    return digest


def image_manifest(config: bytes, layers: list[bytes]) -> bytes:
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": {
                "mediaType": MT_OCI_CONFIG,
                "digest": sha256_digest(config),
                "size": len(config),
            },
            "layers": [
                {"mediaType": MT_OCI_LAYER_GZIP, "digest": sha256_digest(la), "size": len(la)}
                for la in layers
            ],
        }
    )


def put_manifest(client: httpx.Client, repository: str, tag: str, manifest: bytes) -> str:
    response = client.put(
        f"/v2/{repository}/manifests/{tag}",
        content=manifest,
        headers={"Content-Type": MT_OCI_MANIFEST},
    )
    assert response.status_code == 201, describe_response(response)
    return sha256_digest(manifest)


def push_small_image(client: httpx.Client, repository: str, tag: str, layer: bytes) -> str:
    config = canonical_json({"architecture": "amd64", "os": "linux", "layer": repository})
    push_blob(client, repository, config)
    push_blob(client, repository, layer)
    return put_manifest(client, repository, tag, image_manifest(config, [layer]))


def wait_for_status(node: RegistryServer, path: str, status: int, within: float) -> httpx.Response:
    deadline = time.monotonic() + within
    while True:
        try:
            response = httpx.get(f"{node.url}{path}", timeout=5.0)
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code == status:
            return response
        if time.monotonic() > deadline:
            detail = describe_response(response) if response is not None else "no answer"
            pytest.fail(f"{node.url}{path} did not answer {status} within {within}s: {detail}")
        time.sleep(0.2)


# ---- any request on any node ---------------------------------------------------------------


def test_conformance_suite_through_nginx(cluster: Cluster, doomed: tuple[str, float]) -> None:
    """The OCI conformance suite, logged in through the token flow, against nginx: every
    request may land on another node (deletes, mounts, referrers, tag lists included)."""
    env = {
        **os.environ,
        "CONFORMANCE_URL": cluster.nginx.url,
        "CONFORMANCE_USER": USER,
        "CONFORMANCE_PASSWORD": PASSWORD,
        "CONFORMANCE_CA_FILE": str(cluster.pki.ca_cert),
    }
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/conformance"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, describe_run(result)
    # Every node served some of it: round-robin really spread the suite.
    for node in cluster.nodes:
        assert "/v2/" in node.log_path.read_text(errors="replace"), f"{node.url} served nothing"


def test_token_from_one_node_is_accepted_by_the_others(cluster: Cluster) -> None:
    with cluster.client(auth=None) as client:
        challenge = client.get("/v2/")
    assert challenge.status_code == 401
    # The realm names the load balancer, never a node.
    assert f'realm="{cluster.nginx.url}/token"' in challenge.headers["www-authenticate"]
    first, *others = cluster.nodes
    with cluster.node_client(first) as direct:
        issued = direct.get(
            "/token", params={"service": "moorage", "scope": "repository:tokens/app:pull,push"}
        )
    assert issued.status_code == 200, describe_response(issued)
    bearer = {"Authorization": f"Bearer {issued.json()['token']}"}
    for node in others:
        with cluster.node_client(node, auth=None) as client:
            started = client.post("/v2/tokens/app/blobs/uploads/", headers=bearer)
            assert started.status_code == 202, describe_response(started)
            refused = client.get("/v2/other/app/tags/list", headers=bearer)
            assert refused.status_code == 401, describe_response(refused)


def test_skopeo_and_podman_push_and_pull_through_nginx(cluster: Cluster, tmp_path: Path) -> None:
    host, cert_dir = cluster.nginx.host, cluster.pki.cert_dir
    skopeo_round_trip(skopeo(cluster), host, cert_dir, tmp_path, "clients/skopeo", cluster.creds())

    layout = tmp_path / "podman-layout"
    image = new_image_layout(layout, "cluster podman")
    remote = f"{host}/clients/podman:v1"
    with podman_tool(cluster.nodes[0], tmp_path) as podman:
        pulled = podman("pull", "--quiet", f"oci:{layout}:v1").stdout.strip().splitlines()[-1]
        podman("tag", pulled, remote)
        auth = ("--cert-dir", str(cert_dir), "--creds", cluster.creds())
        podman("push", *auth, remote)
        podman("rmi", "--all", "--force")
        podman("pull", *auth, remote)
    with cluster.client() as client:
        manifest = client.head(
            "/v2/clients/podman/manifests/v1", headers={"Accept": MT_OCI_MANIFEST}
        )
    assert manifest.status_code == 200, describe_response(manifest)
    assert image.layers  # podman may re-compress; that the tag resolves is the point


def test_chunked_upload_hops_nodes(cluster: Cluster) -> None:
    """POST on one node, each PATCH on another, the PUT on a third: the session is data."""
    chunks = [bytes([n]) * (256 * 1024 + n) for n in range(4)]
    body = b"".join(chunks)
    digest = sha256_digest(body)
    nodes = cluster.nodes
    with cluster.node_client(nodes[0]) as client:
        started = client.post("/v2/hops/app/blobs/uploads/")
    assert started.status_code == 202, describe_response(started)
    location = started.headers["location"]
    offset = 0
    for index, chunk in enumerate(chunks):
        node = nodes[(index + 1) % len(nodes)]
        with cluster.node_client(node) as client:
            patched = client.patch(
                location,
                content=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(chunk) - 1}",
                },
            )
        assert patched.status_code == 202, describe_response(patched)
        offset += len(chunk)
        assert patched.headers["range"] == f"0-{offset - 1}"
        location = patched.headers["location"]
    with cluster.node_client(nodes[2]) as client:
        status = client.get(location)
        assert status.status_code == 204, describe_response(status)
        assert status.headers["range"] == f"0-{offset - 1}"
    with cluster.node_client(nodes[1]) as client:
        closed = client.put(location, params={"digest": digest})
    assert closed.status_code == 201, describe_response(closed)
    for node in nodes:
        with cluster.node_client(node) as client:
            fetched = client.get(f"/v2/hops/app/blobs/{digest}", follow_redirects=True)
        assert fetched.status_code == 200, describe_response(fetched)
        assert fetched.content == body


def test_manifest_pushes_racing_on_one_tag(cluster: Cluster) -> None:
    """Two nodes move one tag at once, many times: every push succeeds, and afterwards every
    node agrees on one of the two manifests and lists the tag once."""
    repository = "race/app"
    with cluster.client() as client:
        config = canonical_json({"architecture": "amd64", "os": "linux"})
        layers = [b"race layer a" * 100, b"race layer b" * 100]
        push_blob(client, repository, config)
        for layer in layers:
            push_blob(client, repository, layer)
    manifests = [image_manifest(config, [layer]) for layer in layers]
    barrier = threading.Barrier(2)

    def push(node: RegistryServer, manifest: bytes) -> None:
        with cluster.node_client(node) as client:
            barrier.wait(timeout=30)
            put_manifest(client, repository, "latest", manifest)

    for _ in range(8):
        with ThreadPoolExecutor(2) as pool:
            futures = [
                pool.submit(push, cluster.nodes[0], manifests[0]),
                pool.submit(push, cluster.nodes[1], manifests[1]),
            ]
            for future in futures:
                future.result()
        seen = set()
        for node in cluster.nodes:
            with cluster.node_client(node) as client:
                head = client.head(
                    f"/v2/{repository}/manifests/latest", headers={"Accept": MT_OCI_MANIFEST}
                )
                tags = client.get(f"/v2/{repository}/tags/list").json()["tags"]
            assert head.status_code == 200, describe_response(head)
            seen.add(head.headers["docker-content-digest"])
            assert tags == ["latest"]
        assert len(seen) == 1
        assert seen <= {sha256_digest(m) for m in manifests}


def test_catalog_pages_with_last_across_nodes(cluster: Cluster) -> None:
    names = [f"catalog/r{n:02d}" for n in range(7)]
    with cluster.client() as client:
        for name in names:
            push_small_image(client, name, "v1", f"catalog {name}".encode())
    listed: list[str] = []
    last = "catalog/"
    page = 0
    while True:
        node = cluster.nodes[page % len(cluster.nodes)]
        with cluster.node_client(node, auth=(ADMIN, ADMIN_PASSWORD)) as client:
            response = client.get("/v2/_catalog", params={"n": 2, "last": last})
        assert response.status_code == 200, describe_response(response)
        batch = [r for r in response.json()["repositories"] if r.startswith("catalog/")]
        listed.extend(batch)
        if len(batch) < 2 or "link" not in response.headers:
            break
        last = batch[-1]
        page += 1
    assert listed == names
    assert page >= 3  # the walk really crossed every node


# ---- node failure --------------------------------------------------------------------------


def big_layout(path: Path, label: str) -> OciLayout:
    """An image of several 2 MiB layers, so a push takes long enough to be interrupted."""
    layout = OciLayout(path)
    files = {
        f"data/{n}.bin": (f"{label} {n}".encode() * 100_000)[: 2 * 1024 * 1024] for n in range(6)
    }
    image = layout.add_image(files)
    layout.tag(image.manifest, "v1")
    return layout


def test_node_killed_mid_push_skopeo_retries_through_the_others(
    cluster: Cluster, tmp_path: Path
) -> None:
    with cluster.client() as client:
        before = push_small_image(client, "survivors/acked", "v1", b"acknowledged" * 300)
    victim = cluster.nodes[1]
    layouts = [big_layout(tmp_path / f"big{n}", f"killed push {n}") for n in range(3)]
    tool = skopeo(cluster)

    def push(n: int) -> subprocess.CompletedProcess[str]:
        return tool(
            "copy",
            "--retry-times",
            "5",
            "--dest-cert-dir",
            cluster.pki.cert_dir,
            "--dest-creds",
            cluster.creds(),
            layouts[n].reference("v1"),
            f"docker://{cluster.nginx.host}/survivors/big{n}:v1",
            check=False,
        )

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(push, n) for n in range(3)]
        # Kill once the pushes are under way through every node.
        access_log = cluster.nginx.prefix / "access.log"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if access_log.read_text(errors="replace").count("/survivors/big") >= 6:
                break
            time.sleep(0.05)
        victim.stop(kill=True)
        results = [future.result() for future in futures]
    try:
        for result in results:
            assert result.returncode == 0, describe_run(result)
        # The kill cut requests in flight (or refused the next ones), and nginx moved them on.
        cut = [
            line
            for line in (cluster.nginx.error_log.read_text(errors="replace").splitlines())
            if "upstream" in line and "/survivors/big" in line
        ]
        assert cut, cluster.nginx.log_tail()
        with cluster.client() as client:
            for n, layout in enumerate(layouts):
                pulled = client.get(
                    f"/v2/survivors/big{n}/manifests/v1", headers={"Accept": MT_OCI_MANIFEST}
                )
                assert pulled.status_code == 200, describe_response(pulled)
                assert pulled.headers["docker-content-digest"] == layout.resolve("v1").digest
                for layer in pulled.json()["layers"]:
                    blob = client.get(
                        f"/v2/survivors/big{n}/blobs/{layer['digest']}", follow_redirects=True
                    )
                    assert sha256_digest(blob.content) == layer["digest"]
            acked = client.head(
                "/v2/survivors/acked/manifests/v1", headers={"Accept": MT_OCI_MANIFEST}
            )
            assert acked.headers["docker-content-digest"] == before
    finally:
        victim.start()


@pytest.mark.parametrize(
    "victim_index",
    [
        pytest.param(0, id="same-pid-namespace"),
        pytest.param(FOREIGN_NODE, id="another-host"),
    ],
)
def test_upload_session_of_a_killed_node_continues_elsewhere_at_once(
    cluster: Cluster, victim_index: int
) -> None:
    """A node dies while it holds an upload session (mid-PATCH); the client goes on with the
    session on another node without waiting for the lease to run out. On one host the
    survivor sees that the holder's process is gone; a node on another host (here: another
    pid namespace) is presumed dead once its beats are ``cluster.node_timeout`` (5 s) old, and
    the survivor holds the PATCH until then instead of answering 429."""
    victim, survivor = cluster.nodes[victim_index], cluster.nodes[2]
    first = b"first chunk " * 10_000
    with cluster.node_client(survivor) as client:
        started = client.post(f"/v2/failover/app{victim_index}/blobs/uploads/")
        location = started.headers["location"]
        patched = client.patch(
            location,
            content=first,
            headers={"Content-Range": f"0-{len(first) - 1}"},
        )
        assert patched.status_code == 202, describe_response(patched)
        location = patched.headers["location"]

    def trickle() -> Iterator[bytes]:
        yield b"x" * 65536
        time.sleep(30)  # the node is killed meanwhile
        yield b"never sent"

    def held_patch() -> None:
        with cluster.node_client(victim) as client, pytest.raises(httpx.HTTPError):
            client.patch(location, content=trickle(), timeout=40)

    thread = threading.Thread(target=held_patch, daemon=True)
    thread.start()
    time.sleep(1.5)  # the victim has claimed the session and is appending
    victim.stop(kill=True)
    try:
        with cluster.node_client(survivor) as client:
            asked = time.monotonic()
            status = client.get(location)
            assert status.status_code == 204, describe_response(status)
            assert status.headers["range"] == f"0-{len(first) - 1}"
            second = b"second chunk " * 1000
            resumed = client.patch(
                location,
                content=second,
                headers={"Content-Range": f"{len(first)}-{len(first) + len(second) - 1}"},
            )
            assert resumed.status_code == 202, describe_response(resumed)
            closed = client.put(
                resumed.headers["location"], params={"digest": sha256_digest(first + second)}
            )
            assert closed.status_code == 201, describe_response(closed)
            assert time.monotonic() - asked < 10, "waited for the dead node's lease"
    finally:
        victim.start()
        thread.join(timeout=1)


def test_node_without_database_or_bucket_fails_readyz_and_recovers(cluster: Cluster) -> None:
    node = cluster.isolated
    wait_for_status(node, "/readyz", 200, READY_WITHIN)

    cluster.db_relay.down()
    try:
        failing = wait_for_status(node, "/readyz", 503, READY_WITHIN)
        assert failing.json()["checks"]["database"]["status"] == "failing"
        # The others keep serving through the load balancer; the cut-off node's share is a
        # retryable 503, never an internal error (nginx-cluster.conf says why it is not
        # retried there).
        answers = []
        with cluster.client() as client:
            for _ in range(9):
                assert client.get("/v2/").status_code == 200
                answers.append(client.get("/v2/hops/app/tags/list"))
        assert any(answer.status_code == 200 for answer in answers)
        for answer in answers:
            if answer.status_code != 200:
                assert answer.status_code == 503, describe_response(answer)
                assert answer.headers["retry-after"] == "1"
    finally:
        cluster.db_relay.up()
    wait_for_status(node, "/readyz", 200, READY_WITHIN)

    cluster.s3_proxy.fail_with = (503, "SlowDown")
    try:
        failing = wait_for_status(node, "/readyz", 503, READY_WITHIN)
        assert failing.json()["checks"]["storage"]["status"] == "failing"
    finally:
        cluster.s3_proxy.fail_with = None
    wait_for_status(node, "/readyz", 200, READY_WITHIN)


# ---- garbage collection while others push --------------------------------------------------


def test_gc_on_one_node_while_others_push(
    cluster: Cluster, doomed: tuple[str, float], tmp_path: Path
) -> None:
    grace = 10.0
    digest, pushed_at = doomed
    with cluster.client() as client:
        deleted = client.delete(f"/v2/gc/doomed/manifests/{digest}")
        assert deleted.status_code == 202, describe_response(deleted)
    time.sleep(max(0.0, pushed_at + grace + 1 - time.monotonic()))

    stop = threading.Event()
    pushed: list[tuple[str, str]] = []
    failures: list[str] = []

    def keep_pushing(node: RegistryServer, label: str) -> None:
        n = 0
        with cluster.node_client(node) as client:
            while not stop.is_set():
                repository = f"gc/live-{label}"
                try:
                    tag = f"v{n}"
                    layer = f"{label} live layer {n}".encode() * 200
                    pushed.append((repository, push_small_image(client, repository, tag, layer)))
                except AssertionError as error:
                    failures.append(str(error))
                n += 1

    pushers = [
        threading.Thread(target=keep_pushing, args=(node, f"n{i}"))
        for i, node in enumerate(cluster.nodes[1:])
    ]
    for thread in pushers:
        thread.start()
    try:
        time.sleep(1)
        gc = subprocess.run(
            [
                str(Path(sys.executable).parent / "moorage"),
                "gc",
                "--config",
                str(cluster.config),
                "--data-dir",
                str(cluster.nodes[0].data_dir),
                "--grace",
                f"{grace:.0f}s",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        time.sleep(1)
    finally:
        stop.set()
        for thread in pushers:
            thread.join(timeout=60)
    assert gc.returncode == 0, describe_run(gc)
    report = json.loads(gc.stdout)
    assert report["bytes_freed"] > 0, report
    assert failures == []
    assert len(pushed) >= 2
    with cluster.client() as client:
        gone = client.get(f"/v2/gc/doomed/manifests/{digest}", headers={"Accept": MT_OCI_MANIFEST})
        assert gone.status_code == 404
        for repository, manifest_digest in pushed:
            manifest = client.get(
                f"/v2/{repository}/manifests/{manifest_digest}",
                headers={"Accept": MT_OCI_MANIFEST},
            )
            assert manifest.status_code == 200, describe_response(manifest)
            body = manifest.json()
            for descriptor in (body["config"], *body["layers"]):
                blob = client.get(
                    f"/v2/{repository}/blobs/{descriptor['digest']}", follow_redirects=True
                )
                assert blob.status_code == 200, describe_response(blob)
                assert sha256_digest(blob.content) == descriptor["digest"]
