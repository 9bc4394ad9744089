"""X-Forwarded-* from trusted proxies rewrite what the app sees; from anyone else, nothing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from moorage.api.forwarded import (
    TrustedProxyHeaders,
    forwarded_client,
    forwarded_host,
    parse_trusted,
)
from moorage.app import create_app
from moorage.config import load_settings

PROXY = "127.0.0.1"
STRANGER = "203.0.113.9"
TRUSTED = ["127.0.0.1", "10.0.0.0/8"]


async def echo(request: Request) -> Response:
    """What a handler would build URLs and logs from."""
    client = request.client
    return JSONResponse(
        {
            "url": str(request.url),
            "base_url": str(request.base_url),
            "upload": str(request.url_for("upload", name="demo")),
            "host": request.headers.get("host"),
            "client": client.host if client else None,
        }
    )


APP = Starlette(
    routes=[
        Route("/v2/{name}/blobs/uploads/", echo, methods=["GET", "POST"], name="upload"),
    ]
)


async def seen(
    peer: str, headers: Mapping[str, str], trusted: list[str] = TRUSTED
) -> dict[str, Any]:
    """What the app sees of ``POST http://backend:5000/v2/demo/blobs/uploads/`` from ``peer``."""
    transport = httpx.ASGITransport(
        app=TrustedProxyHeaders(APP, trusted),
        client=(peer, 41000),
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://backend:5000") as client:
        response = await client.post("/v2/demo/blobs/uploads/", headers=dict(headers))
    assert response.status_code == 200
    view: dict[str, Any] = json.loads(response.content)
    return view


NGINX = {
    "Host": "registry.example.com",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "198.51.100.7",
}


async def test_trusted_proxy_makes_urls_public_https() -> None:
    view = await seen(PROXY, NGINX)
    assert view["url"] == "https://registry.example.com/v2/demo/blobs/uploads/"
    assert view["base_url"] == "https://registry.example.com/"
    assert view["upload"] == "https://registry.example.com/v2/demo/blobs/uploads/"
    assert view["client"] == "198.51.100.7"


async def test_forwarded_host_replaces_host_and_keeps_its_port() -> None:
    headers = {**NGINX, "Host": "127.0.0.1:5000", "X-Forwarded-Host": "Registry.Example.com:8443"}
    view = await seen(PROXY, headers)
    assert view["url"] == "https://registry.example.com:8443/v2/demo/blobs/uploads/"
    assert view["host"] == "registry.example.com:8443"


async def test_trusted_network_by_cidr_and_ipv4_mapped_peer() -> None:
    assert (await seen("10.1.2.3", NGINX))["url"].startswith("https://")
    assert (await seen("::ffff:127.0.0.1", NGINX))["url"].startswith("https://")


@pytest.mark.parametrize("peer", [STRANGER, "11.0.0.1", "::1", ""])
async def test_untrusted_peer_headers_are_ignored(peer: str) -> None:
    headers = {**NGINX, "X-Forwarded-Host": "evil.example", "Host": "backend:5000"}
    view = await seen(peer, headers)
    assert view["url"] == "http://backend:5000/v2/demo/blobs/uploads/"
    assert view["host"] == "backend:5000"
    assert view["client"] == peer


async def test_peer_without_address_is_not_trusted() -> None:
    """A Unix-socket connection has no client address: it cannot match a trusted network."""
    scopes: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)

    scope: Scope = {
        "type": "http",
        "scheme": "http",
        "client": None,
        "server": None,
        "headers": [(b"host", b"backend"), (b"x-forwarded-proto", b"https")],
    }

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    await TrustedProxyHeaders(inner, ["0.0.0.0/0", "::/0"])(scope, receive, send)
    assert scopes[0]["scheme"] == "http"


async def test_no_trusted_proxies_means_nobody_is_believed() -> None:
    view = await seen(PROXY, NGINX, trusted=[])
    assert view["url"].startswith("http://registry.example.com/")
    assert view["client"] == PROXY


async def test_spoofed_forwarded_for_cannot_hide_the_real_client() -> None:
    """nginx appends the peer it saw ($proxy_add_x_forwarded_for): a client that sends its own
    X-Forwarded-For only adds entries to the left of the address nginx wrote."""
    headers = {**NGINX, "X-Forwarded-For": "127.0.0.1, 10.0.0.1, 198.51.100.7"}
    assert (await seen(PROXY, headers))["client"] == "198.51.100.7"
    # Trusted hops on the right are skipped: the client is the first untrusted one from there.
    headers = {**NGINX, "X-Forwarded-For": "1.2.3.4, 198.51.100.7, 10.0.0.5, 127.0.0.1"}
    assert (await seen(PROXY, headers))["client"] == "198.51.100.7"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("X-Forwarded-Proto", "gopher"),
        ("X-Forwarded-Proto", "https extra"),
        ("X-Forwarded-Proto", ""),
        ("X-Forwarded-Host", "evil.example/path"),
        ("X-Forwarded-Host", "evil.example:99999"),
        ("X-Forwarded-Host", "evil.example:"),
        ("X-Forwarded-Host", "user@evil.example"),
        ("X-Forwarded-Host", "[not-ipv6]:443"),
        ("X-Forwarded-Host", "-evil.example"),
        ("X-Forwarded-Host", "a" * 300),
        ("X-Forwarded-For", "not-an-address"),
        ("X-Forwarded-For", "198.51.100.7:1234"),
        ("X-Forwarded-For", "1.2.3.4, , 127.0.0.1"),
    ],
)
async def test_malformed_values_are_ignored(name: str, value: str) -> None:
    headers = {"Host": "backend:5000", name: value}
    view = await seen(PROXY, headers)
    assert view["url"] == "http://backend:5000/v2/demo/blobs/uploads/"
    assert view["host"] == "backend:5000"
    assert view["client"] == PROXY


async def test_first_value_of_a_list_wins_for_proto_and_host() -> None:
    headers = {
        "Host": "backend:5000",
        "X-Forwarded-Proto": "https, http",
        "X-Forwarded-Host": "registry.example.com, internal:5000",
    }
    view = await seen(PROXY, headers)
    assert view["url"] == "https://registry.example.com/v2/demo/blobs/uploads/"


def test_forwarded_host_accepts_ipv6_literals_and_refuses_bad_ones() -> None:
    host = forwarded_host(["[2001:DB8::1]:8443"])
    assert host is not None
    assert (host.host, host.port, host.header) == ("2001:db8::1", 8443, "[2001:db8::1]:8443")
    assert forwarded_host(["[::1"]) is None
    assert forwarded_host(["2001:db8::1"]) is None  # unbracketed: where would the port be?
    assert forwarded_host(["host:0"]) is None


def test_all_trusted_hops_leave_the_leftmost_as_client() -> None:
    networks = parse_trusted(TRUSTED)
    assert forwarded_client(["10.0.0.2, 10.0.0.1"], networks) == "10.0.0.2"
    assert forwarded_client([], networks) is None


def test_trusted_entries_must_be_addresses_or_networks() -> None:
    assert len(parse_trusted(["127.0.0.1", "::1", "10.1.2.3/8"])) == 3
    with pytest.raises(ValueError, match="'localhost'"):
        TrustedProxyHeaders(APP, ["127.0.0.1", "localhost"])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_forwarded_host_is_refused_or_a_clean_host_header(value: str) -> None:
    """Whatever a proxy passes on, a Host header we write never smuggles in a path, a user,
    whitespace or a second header."""
    host = forwarded_host([value])
    if host is not None:
        assert not set(host.header) & set("/@?# \t\r\n\\")
        assert forwarded_host([host.header]) == host


@pytest.mark.parametrize(
    ("trusted", "peer", "scheme"),
    [
        (["127.0.0.1"], "127.0.0.1", "https"),
        (["127.0.0.1"], STRANGER, "http"),
        ([], "127.0.0.1", "http"),
    ],
)
async def test_the_registry_app_believes_only_configured_proxies(
    tmp_path: Path, trusted: list[str], peer: str, scheme: str
) -> None:
    """``proxy.trusted`` wires the middleware into the real app: an absolute URL it builds
    (here Starlette's trailing-slash redirect) names the scheme the proxy reported."""
    app = create_app(load_settings(storage={"data_dir": tmp_path}, proxy={"trusted": trusted}))
    transport = httpx.ASGITransport(app=app, client=(peer, 41000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:5000") as client:
        response = await client.get("/healthz/", headers=NGINX)
    assert response.status_code == 307
    assert response.headers["location"] == f"{scheme}://registry.example.com/healthz"
