"""The Docker token flow as clients run it, for running the conformance suite with auth on.

Before the first request for a scope the client learns the challenge (``GET /v2/`` answers 401
with ``Bearer realm=...,service=...``), fetches a token for the scope from the realm with Basic
credentials, and sends it as ``Authorization: Bearer``. A 401 on a request whose body can be
sent again (a scope guessed too narrowly) gets one more token and one retry.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from urllib.parse import parse_qs, urlsplit

import httpx

_REPOSITORY_PATH = re.compile(r"^/v2/(?P<name>.+?)/(?:blobs|manifests|tags|referrers)/")
_PARAM = re.compile(r'(\w+)="([^"]*)"')


def scopes_for(request: httpx.Request) -> tuple[str, ...]:
    """Every scope the request could need (the suite acts as a user who may do everything)."""
    path = request.url.path
    if path == "/v2/_catalog":
        return ("registry:catalog:*",)
    match = _REPOSITORY_PATH.match(path)
    if match is None:
        return ()
    scopes = [f"repository:{match.group('name')}:pull,push,delete"]
    source = parse_qs(urlsplit(str(request.url)).query).get("from")
    if source:
        scopes.append(f"repository:{source[0]}:pull")
    return tuple(scopes)


def parse_challenge(header: str) -> dict[str, str]:
    scheme, _, params = header.partition(" ")
    if scheme.lower() != "bearer":
        raise AssertionError(f"expected a Bearer challenge, got {header!r}")
    return dict(_PARAM.findall(params))


class DockerTokenAuth(httpx.Auth):
    requires_response_body = True

    def __init__(self, username: str, password: str) -> None:
        self.basic = httpx.BasicAuth(username, password)
        self.challenge: dict[str, str] | None = None
        self.tokens: dict[tuple[str, ...], str] = {}
        self.token_requests = 0

    def _token_request(self, scopes: tuple[str, ...]) -> httpx.Request:
        assert self.challenge is not None
        params: list[tuple[str, str | int | float | bool | None]] = [
            ("service", self.challenge["service"]),
            *(("scope", s) for s in scopes),
        ]
        request = httpx.Request("GET", self.challenge["realm"], params=params)
        return next(self.basic.auth_flow(request))

    def _learn(self, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        self.token_requests += 1

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" in request.headers:  # the test chose its own credentials
            yield request
            return
        scopes = scopes_for(request)
        if self.challenge is None:
            ping = yield httpx.Request("GET", request.url.copy_with(path="/v2/", query=b""))
            assert ping.status_code == 401, "with auth on, GET /v2/ must challenge"
            self.challenge = parse_challenge(ping.headers["www-authenticate"])
        if scopes not in self.tokens:
            answer = yield self._token_request(scopes)
            self._learn(answer)
            self.tokens[scopes] = answer.json()["token"]
        request.headers["Authorization"] = f"Bearer {self.tokens[scopes]}"
        response = yield request
        if response.status_code != 401 or not isinstance(request.stream, httpx.ByteStream):
            return  # only a body held in memory can be sent twice
        wanted = parse_challenge(response.headers["www-authenticate"]).get("scope", "")
        retry_scopes = tuple(sorted({*scopes, *wanted.split()}))
        answer = yield self._token_request(retry_scopes)
        self._learn(answer)
        request.headers["Authorization"] = f"Bearer {answer.json()['token']}"
        yield request
