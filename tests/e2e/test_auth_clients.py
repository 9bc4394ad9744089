"""Real clients against ``moorage serve --htpasswd FILE --policy FILE``: skopeo and podman log in
with users from files made by Apache's own ``htpasswd`` in each of its formats, and with API
tokens made by ``moorage token create``; anonymous and unauthorised callers are refused."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .support import (
    RegistryServer,
    Tool,
    describe_run,
    moorage_executable,
    new_image_layout,
    podman_tool,
    require_tool,
)

pytestmark = pytest.mark.e2e

# One user per format Apache's htpasswd writes (crypt uses at most 8 characters).
FORMATS = {
    "apr1user": ("-m", "apr1-pass-1"),
    "bcryptuser": ("-B", "bcrypt-pass-2"),
    "shauser": ("-s", "sha-pass-3"),
    "cryptuser": ("-d", "crypt-p4"),
}
POLICY = """
rules:
  - repositories: ["*"]
    users: [apr1user, bcryptuser, shauser, cryptuser]
    actions: [pull, push, delete]
  - repositories: ["*"]
    users: [reader]
    actions: [pull]
  - repositories: ["public/*"]
    users: [alice]
    actions: [pull, push]
  - repositories: ["public/*"]
    anonymous: true
    actions: [pull]
"""


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    workdir = tmp_path_factory.mktemp("auth-registry")
    htpasswd = workdir / "htpasswd"
    tool = require_tool("htpasswd")
    others = [("reader", ("-B", "reader-pass")), ("alice", ("-B", "alice-pass"))]
    for user, (flag, password) in [*FORMATS.items(), *others]:
        create = ["-c"] if not htpasswd.exists() else []
        subprocess.run([tool, *create, "-b", flag, str(htpasswd), user, password], check=True)
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    server = RegistryServer(
        "moorage", workdir, extra_args=["--htpasswd", str(htpasswd), "--policy", str(policy)]
    )
    with server:
        yield server


@pytest.fixture
def skopeo(auth_registry: RegistryServer) -> Tool:
    return Tool("skopeo", registry=auth_registry)


def test_htpasswd_file_holds_every_format(auth_registry: RegistryServer) -> None:
    lines = (auth_registry.workdir / "htpasswd").read_text().splitlines()
    hashes = dict(line.split(":", 1) for line in lines)
    assert hashes["apr1user"].startswith("$apr1$")
    assert hashes["bcryptuser"].startswith("$2y$")
    assert hashes["shauser"].startswith("{SHA}")
    assert len(hashes["cryptuser"]) == 13  # traditional DES crypt


@pytest.mark.parametrize("user", sorted(FORMATS))
def test_skopeo_pushes_and_pulls_with_each_htpasswd_format(
    auth_registry: RegistryServer, skopeo: Tool, tmp_path: Path, user: str
) -> None:
    creds = f"{user}:{FORMATS[user][1]}"
    image = new_image_layout(tmp_path / "src", f"auth-{user}")
    remote = f"docker://{auth_registry.host}/auth/{user}:v1"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        f"oci:{tmp_path / 'src'}:v1",
        remote,
    )
    inspected = skopeo.json("inspect", "--tls-verify=false", "--creds", creds, "--raw", remote)
    assert inspected["config"]["digest"] == image.config.digest
    skopeo(
        "copy", "--src-tls-verify=false", "--src-creds", creds, remote, f"oci:{tmp_path / 'out'}:v1"
    )
    assert (tmp_path / "out" / "blobs" / "sha256" / image.config.digest.split(":")[1]).exists()


def test_anonymous_wrong_password_and_reader_are_refused(
    auth_registry: RegistryServer, skopeo: Tool, tmp_path: Path
) -> None:
    new_image_layout(tmp_path / "src", "auth-refused")
    source = f"oci:{tmp_path / 'src'}:v1"
    remote = f"docker://{auth_registry.host}/auth/refused:v1"
    anonymous = skopeo("copy", "--dest-tls-verify=false", source, remote, check=False)
    assert anonymous.returncode != 0
    assert (
        "authentication required" in anonymous.stderr or "unauthorized" in anonymous.stderr.lower()
    )
    wrong = skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "bcryptuser:nope",
        source,
        remote,
        check=False,
    )
    assert wrong.returncode != 0, describe_run(wrong)
    reader = skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "reader:reader-pass",
        source,
        remote,
        check=False,
    )
    assert reader.returncode != 0, describe_run(reader)
    assert "denied" in reader.stderr.lower(), describe_run(reader)
    with httpx.Client(base_url=auth_registry.url) as http:
        assert (
            http.get("/v2/auth/refused/tags/list", auth=("bcryptuser", "bcrypt-pass-2")).status_code
            == 404
        )


def test_wrong_credentials_fail_on_an_anonymously_pullable_repository(
    auth_registry: RegistryServer, skopeo: Tool, tmp_path: Path
) -> None:
    """Anyone may pull public/*, but credentials that are sent and wrong are refused, not
    served as anonymous: a client with a typo in its password must find out."""
    image = new_image_layout(tmp_path / "src", "auth-public")
    remote = f"docker://{auth_registry.host}/public/app:v1"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:alice-pass",
        f"oci:{tmp_path / 'src'}:v1",
        remote,
    )
    anonymous = skopeo.json("inspect", "--tls-verify=false", "--no-creds", "--raw", remote)
    assert anonymous["config"]["digest"] == image.config.digest
    for creds in ("alice:wrong", "nobody:alice-pass"):
        refused = skopeo("inspect", "--tls-verify=false", "--creds", creds, remote, check=False)
        assert refused.returncode != 0, describe_run(refused)
        error = refused.stderr.lower()
        assert "invalid username/password" in error or "unauthorized" in error, describe_run(
            refused
        )


def test_api_token_from_the_cli_is_a_password_within_its_scope(
    auth_registry: RegistryServer, skopeo: Tool, tmp_path: Path
) -> None:
    created = subprocess.run(
        [
            moorage_executable(),
            "token",
            "create",
            "--user",
            "bcryptuser",
            "--scope",
            "repository:ci/*:pull,push",
            "--expires",
            "1d",
        ],
        capture_output=True,
        text=True,
        env={"MOORAGE_STORAGE__DATA_DIR": str(auth_registry.data_dir), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("moor_")
    image = new_image_layout(tmp_path / "src", "auth-token")
    source = f"oci:{tmp_path / 'src'}:v1"
    creds = f"bcryptuser:{secret}"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        source,
        f"docker://{auth_registry.host}/ci/app:v1",
    )
    inspected = skopeo.json(
        "inspect",
        "--tls-verify=false",
        "--creds",
        creds,
        "--raw",
        f"docker://{auth_registry.host}/ci/app:v1",
    )
    assert inspected["config"]["digest"] == image.config.digest
    outside = skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        source,
        f"docker://{auth_registry.host}/elsewhere/app:v1",
        check=False,
    )
    assert outside.returncode != 0, describe_run(outside)

    listed = subprocess.run(
        [moorage_executable(), "token", "list"],
        capture_output=True,
        text=True,
        check=True,
        env={"MOORAGE_STORAGE__DATA_DIR": str(auth_registry.data_dir), "PATH": "/usr/bin:/bin"},
    )
    assert "bcryptuser" in listed.stdout
    assert secret not in listed.stdout


def test_podman_login_push_pull(auth_registry: RegistryServer, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    image = new_image_layout(layout, "auth-podman")
    auth_file = {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json")}
    with podman_tool(auth_registry, tmp_path, auth_file) as podman:
        refused = podman(
            "login",
            "--tls-verify=false",
            "-u",
            "apr1user",
            "-p",
            "wrong",
            auth_registry.host,
            check=False,
        )
        assert refused.returncode != 0, describe_run(refused)
        podman(
            "login", "--tls-verify=false", "-u", "apr1user", "-p", "apr1-pass-1", auth_registry.host
        )
        local = podman("pull", "--quiet", f"oci:{layout}:v1").stdout.strip().splitlines()[-1]
        remote = f"{auth_registry.host}/auth/podman:v1"
        podman("push", "--tls-verify=false", local, remote)
        podman("rmi", "--all", "--force")
        podman("pull", "--tls-verify=false", remote)
        [inspected] = podman.json("image", "inspect", remote)
        assert f"sha256:{inspected['Id']}" == image.config.digest
        podman("logout", auth_registry.host)
        anonymous = podman("pull", "--tls-verify=false", remote, check=False)
        assert anonymous.returncode != 0, describe_run(anonymous)
