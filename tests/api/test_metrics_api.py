"""GET /metrics in-process: who may read it, and what a known push and pull add to it.

The app runs without PROMETHEUS_MULTIPROC_DIR here (one process); the multiprocess mode is
covered by tests/e2e/test_prometheus.py against `moorage serve --workers 2`.
"""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from moorage.auth.htpasswd import add_user
from tests.api.support import ClientFactory, digest_of, error_code, push_image

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_push_and_a_pull_are_counted_by_route_template(
    make_client: ClientFactory,
) -> None:
    async with make_client(metrics={"inventory_refresh_seconds": 0}) as client:
        before = await scrape(client)
        digest, manifest = await push_image(client, "team/app", "v1", seed=b"metrics")
        session = await client.post("/v2/team/app/blobs/uploads/")
        layer = b"chunked layer bytes"
        put = await client.put(
            f"{session.headers['location']}?digest={digest_of(layer)}", content=layer
        )
        assert put.status_code == 201
        pulled = await client.get(f"/v2/team/app/blobs/{digest_of(layer)}")
        assert pulled.content == layer
        assert (await client.get("/v2/team/app/manifests/v1")).content == manifest
        assert (await client.get("/v2/team/app/manifests/nope")).status_code == 404
        after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    manifests = "/v2/{name}/manifests/{reference}"
    requests = "moorage_http_requests_total"
    assert delta(requests, route=manifests, method="GET", status="2xx") == 1
    assert delta(requests, route=manifests, method="GET", status="4xx") == 1
    assert delta(requests, route=manifests, method="PUT", status="2xx") == 1
    assert delta(requests, route="/v2/{name}/blobs/uploads/", method="POST", status="2xx") == 3
    histogram = "moorage_http_request_duration_seconds_count"
    assert delta(histogram, route=manifests, method="GET") == 2
    # Two monolithic pushes (config, layer) and one session upload; one blob pulled.
    config_and_layer = len(b'{"architecture":"amd64","os":"linux","seed":"6d657472696373"}')
    received = delta("moorage_blob_received_bytes_total")
    assert received == config_and_layer + len(b"layer-metrics") + len(layer)
    assert delta("moorage_blob_sent_bytes_total") == len(layer)
    assert delta("moorage_upload_sessions_total", event="started") == 1
    assert delta("moorage_upload_sessions_total", event="completed") == 1
    assert delta("moorage_db_transaction_duration_seconds_count") >= 4
    # Inventory gauges (recounted at every scrape with a refresh of 0 s).
    assert value(after, "moorage_repositories") == 1
    assert value(after, "moorage_manifests") == 1
    assert value(after, "moorage_tags") == 1
    assert value(after, "moorage_uploads_in_progress") == 0
    # Never a repository name or a path in a label.
    labels = {label for _, pairs in after for _, label in pairs}
    assert not any("team/app" in label or digest in label for label in labels)


async def test_unmatched_paths_share_one_label(make_client: ClientFactory) -> None:
    async with make_client() as client:
        await client.get("/no/such/path/1")
        await client.get("/no/such/path/2")
        samples = await scrape(client)
    routes = {dict(pairs).get("route") for (name, pairs) in samples if "http_requests" in name}
    assert "unmatched" in routes
    assert not any(route and route.startswith("/no/") for route in routes)


async def test_only_loopback_callers_by_default(make_client: ClientFactory) -> None:
    async with make_client(peer=("203.0.113.9", 5555)) as client:
        response = await client.get("/metrics")
    assert response.status_code == 403
    assert error_code(response) == "DENIED"
    async with make_client(peer=("::1", 5555)) as client:
        assert (await client.get("/metrics")).status_code == 200


async def test_a_trusted_proxy_relaying_a_remote_client_is_refused(
    make_client: ClientFactory,
) -> None:
    async with make_client(proxy={"trusted": ["127.0.0.1"]}) as client:
        relayed = await client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
        local = await client.get("/metrics", headers={"X-Forwarded-For": "127.0.0.1"})
    assert relayed.status_code == 403
    assert local.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "registry.example.com"},
        {"X-Real-IP": "198.51.100.7"},
        {"X-Forwarded-For": "not-an-address"},
    ],
)
async def test_a_trusted_proxy_naming_no_client_is_refused(
    make_client: ClientFactory, headers: dict[str, str]
) -> None:
    """A proxy on loopback that relays without a usable X-Forwarded-For (a configuration that
    forgot it) must not make every remote caller look local."""
    async with make_client(proxy={"trusted": ["127.0.0.1"]}) as client:
        relayed = await client.get("/metrics", headers=headers)
        direct = await client.get("/metrics")  # a Prometheus on the proxy's host: no headers
    assert relayed.status_code == 403 and error_code(relayed) == "DENIED"
    assert direct.status_code == 200


async def test_a_configured_token_is_required_from_everyone(make_client: ClientFactory) -> None:
    for peer in (("127.0.0.1", 1), ("203.0.113.9", 1)):
        async with make_client(peer=peer, metrics={"token": "scrape-me"}) as client:
            missing = await client.get("/metrics")
            wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
            right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert missing.status_code == wrong.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert right.status_code == 200


async def test_metrics_can_be_turned_off(make_client: ClientFactory) -> None:
    async with make_client(metrics={"enabled": False}) as client:
        assert (await client.get("/metrics")).status_code == 404


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    path = tmp_path / "htpasswd"
    add_user(path, "alice", "alice-pw")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        'rules:\n  - repositories: ["alice/*"]\n    users: [alice]\n    actions: [pull, push]\n'
    )
    return path


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_authentication_outcomes_and_refusals(
    make_client: ClientFactory, htpasswd: Path
) -> None:
    auth = {"htpasswd": htpasswd, "policy_file": htpasswd.parent / "policy.yaml"}
    async with make_client(auth=auth) as client:
        before = await scrape(client)
        assert (await client.get("/v2/", headers=basic("alice", "alice-pw"))).status_code == 200
        wrong = await client.get("/v2/", headers=basic("alice", "wrong"))
        assert wrong.status_code == 401
        forged = await client.get("/v2/", headers={"Authorization": "Bearer not.a.jwt"})
        assert forged.status_code == 401
        denied = await client.get("/v2/bob/app/tags/list", headers=basic("alice", "alice-pw"))
        assert denied.status_code == 403
        anonymous = await client.get("/v2/alice/app/tags/list")
        assert anonymous.status_code == 401
        after = await scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    outcomes = "moorage_authentications_total"
    assert delta(outcomes, outcome="success") == 2
    assert delta(outcomes, outcome="wrong_credentials") == 1
    assert delta(outcomes, outcome="token_refused") == 1
    refusals = "moorage_authorization_refusals_total"
    assert delta(refusals, reason="denied") == 1
    assert delta(refusals, reason="authentication_required") == 1
