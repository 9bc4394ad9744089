"""The classic EC2 deployment: no keys anywhere, S3 reached through the instance role.

A loopback stand-in for the EC2 instance metadata service (IMDSv2: a session token, then the
role's temporary credentials) hands out credentials that moto's STS issued for a role; moto
enforces IAM, so only those credentials work. ``AWS_METADATA_ENDPOINT`` points the S3 client's
default chain at the stand-in, as 169.254.169.254 is on a real instance."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from moorage.cli.main import main
from moorage.config import load_settings
from moorage.oci.digest import Digest
from moorage.storage.s3 import S3BlobStore
from tests.support_s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer, moto_server

from .support import OciLayout, RegistryServer, Tool, new_image_layout

pytestmark = pytest.mark.e2e

BUCKET = "registry-by-role"
ROLE_PATH = "/latest/meta-data/iam/security-credentials/"
TRUST_EC2 = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
S3_ONLY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


@dataclass
class InstanceMetadata:
    """The stand-in metadata service; ``credentials`` is what the role hands out now."""

    credentials: dict[str, str]
    requests: list[str] = field(default_factory=list)
    endpoint: str = ""

    def serve(self) -> http.server.ThreadingHTTPServer:
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _answer(self, status: int, body: str) -> None:
                payload = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_PUT(self) -> None:  # IMDSv2: a session token first
                service.requests.append(f"PUT {self.path}")
                self._answer(200, "imds-session-token")

            def do_GET(self) -> None:
                service.requests.append(f"GET {self.path}")
                if self.headers.get("X-aws-ec2-metadata-token") != "imds-session-token":
                    self._answer(401, "")
                elif self.path == ROLE_PATH:
                    self._answer(200, "moorage-instance")
                elif self.path == ROLE_PATH + "moorage-instance":
                    self._answer(200, json.dumps(service.credentials))
                else:
                    self._answer(404, "")

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


def role_credentials(moto: MotoServer, role: str, policy: dict[str, Any] | None) -> dict[str, str]:
    """Temporary credentials for ``role`` (created with ``policy``), as IMDS returns them."""
    import boto3

    sdk = {
        "endpoint_url": moto.endpoint,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
    }
    iam = boto3.client("iam", **sdk)
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(TRUST_EC2))
    if policy is not None:
        iam.put_role_policy(RoleName=role, PolicyName="s3", PolicyDocument=json.dumps(policy))
    issued = boto3.client("sts", **sdk).assume_role(
        RoleArn=arn["Role"]["Arn"], RoleSessionName="i-0123456789abcdef0"
    )["Credentials"]
    return {
        "Code": "Success",
        "Type": "AWS-HMAC",
        "AccessKeyId": issued["AccessKeyId"],
        "SecretAccessKey": issued["SecretAccessKey"],
        "Token": issued["SessionToken"],
        "Expiration": issued["Expiration"].strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@dataclass
class RoleSetup:
    moto: MotoServer
    metadata: InstanceMetadata
    allowed: dict[str, str]
    denied: dict[str, str]


@pytest.fixture(scope="module")
def role_setup() -> Iterator[RoleSetup]:
    # moto checks signatures and policies once these setup requests are spent: the bucket, and
    # for each of two roles create, (policy,) assume.
    with moto_server(BUCKET, env={"INITIAL_NO_AUTH_ACTION_COUNT": "6"}) as moto:
        allowed = role_credentials(moto, "registry-s3", S3_ONLY)
        denied = role_credentials(moto, "no-permissions", None)
        metadata = InstanceMetadata(allowed)
        server = metadata.serve()
        try:
            yield RoleSetup(moto, metadata, allowed, denied)
        finally:
            server.shutdown()


@pytest.fixture
def instance_env(role_setup: RoleSetup, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The classic variables with no key at all, and the metadata service's address."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECRET", raising=False)
    env = {
        "SETTINGS_FLAVOR": "s3",
        "AWS_BUCKET": BUCKET,
        "STORAGE_PATH": "/registry",
        "STORAGE_REDIRECT": "true",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": role_setup.moto.endpoint,
        "AWS_METADATA_ENDPOINT": role_setup.metadata.endpoint,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    role_setup.metadata.credentials = role_setup.allowed
    role_setup.metadata.requests.clear()
    return env


def test_storage_check_uses_the_instance_role(
    role_setup: RoleSetup, instance_env: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, ["storage", "check"])
    assert result.exit_code == 0, result.output
    assert f"s3://{BUCKET}/registry" in result.output
    assert "PUT /latest/api/token" in role_setup.metadata.requests
    assert f"GET {ROLE_PATH}moorage-instance" in role_setup.metadata.requests


def test_a_role_without_s3_permissions_is_named(
    role_setup: RoleSetup, instance_env: dict[str, str]
) -> None:
    role_setup.metadata.credentials = role_setup.denied
    result = CliRunner().invoke(main, ["storage", "check"])
    assert result.exit_code == 1
    assert f"access denied to bucket '{BUCKET}'" in result.output


def test_redirects_are_signed_with_the_role_credentials(
    role_setup: RoleSetup, instance_env: dict[str, str]
) -> None:
    """moto answers every pre-signed URL with a 500 once it enforces IAM, so only the URL is
    checked here; redirects themselves are followed against moto in test_s3_clients.py."""
    store = S3BlobStore.from_settings(load_settings().storage.s3)
    url = store.redirect_url(Digest("sha256", "0" * 64))
    assert url is not None
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Credential"][0].startswith(role_setup.allowed["AccessKeyId"] + "/")
    assert query["X-Amz-Security-Token"] == [role_setup.allowed["Token"]]


def test_skopeo_pushes_and_pulls_through_the_instance_role(
    instance_env: dict[str, str], tmp_path: Path
) -> None:
    source = OciLayout(tmp_path / "source")
    image = new_image_layout(source.path, "instance-role")
    # Bytes through Moorage: moto cannot serve pre-signed URLs while it enforces IAM.
    env = {**instance_env, "STORAGE_REDIRECT": "false"}
    with RegistryServer("moorage", tmp_path / "registry", env=env) as registry:
        skopeo = Tool("skopeo", registry=registry)
        remote = f"docker://{registry.host}/role/app:v1"
        skopeo("copy", "--dest-tls-verify=false", source.reference("v1"), remote)
        back = OciLayout(tmp_path / "back")
        skopeo("copy", "--src-tls-verify=false", remote, back.reference("v1"))
    assert back.resolve("v1").digest == image.manifest.digest
    assert back.corrupt_blobs() == []
