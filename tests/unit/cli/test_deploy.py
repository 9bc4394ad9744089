"""``moorage deploy cloud-init`` and docs/deploy/: what an operator renders, boots and builds
is valid (YAML, shell, Moorage configuration, systemd unit, Containerfile) and holds no secret."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from moorage.cli.deploy import deploy
from moorage.config import load_settings
from moorage.deploy.cloud_init import template

ROOT = Path(__file__).resolve().parents[3]
DOCS = ROOT / "docs" / "deploy"

LB = ["--behind-load-balancer", "--trusted-proxy", "10.0.0.0/16"]
TLS = ["--tls-cert-path", "/etc/pki/moorage/cert.pem", "--tls-key-path", "/etc/pki/moorage/key.pem"]


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MOORAGE_") or name.startswith("AWS_") or name.startswith("STORAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("SETTINGS_FLAVOR", raising=False)


def render(*args: str) -> Result:
    return CliRunner().invoke(deploy, ["cloud-init", *args])


def rendered(*args: str) -> str:
    result = render(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


def files_of(user_data: str) -> dict[str, dict[str, Any]]:
    document = yaml.safe_load(user_data)
    return {entry["path"]: entry for entry in document["write_files"]}


def embedded_config(user_data: str, tmp_path: Path) -> Path:
    path = tmp_path / "moorage.yaml"
    path.write_text(files_of(user_data)["/etc/moorage/moorage.yaml"]["content"])
    return path


def bash_syntax_ok(script: str, tmp_path: Path) -> None:
    path = tmp_path / "script.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- the rendered user-data ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--bucket", "my-registry", "--htpasswd-user", "alice", *LB],
        [
            "--bucket",
            "my-registry",
            "--prefix",
            "/registry",
            "--region",
            "eu-west-1",
            "--no-redirect",
            "--port",
            "443",
            "--htpasswd-user",
            "alice",
            "--htpasswd-user",
            "ci",
            *TLS,
        ],
        [
            "--bucket",
            "my.registry-2",
            "--allow-anonymous-network",
            *LB,
            "--package",
            "git+https://git.example.com/moorage.git@v0.1.0",
        ],
    ],
    ids=["load-balancer", "tls", "anonymous-git"],
)
def test_rendered_user_data_is_valid_cloud_config(args: list[str], tmp_path: Path) -> None:
    user_data = rendered(*args)
    assert user_data.splitlines()[0] == "#cloud-config"
    document = yaml.safe_load(user_data)
    assert set(document) == {"write_files", "runcmd"}
    files = files_of(user_data)
    assert set(files) == {
        "/etc/moorage/moorage.yaml",
        "/etc/systemd/system/moorage.service",
        "/usr/local/sbin/moorage-install",
    }
    assert document["runcmd"] == [["/usr/local/sbin/moorage-install"]]

    install = files["/usr/local/sbin/moorage-install"]["content"]
    assert install.startswith("#!/bin/bash\n")
    bash_syntax_ok(install, tmp_path)
    # The unit installed is the documented one, byte for byte.
    assert (
        files["/etc/systemd/system/moorage.service"]["content"]
        == (DOCS / "moorage.service").read_text()
    )

    settings = load_settings(embedded_config(user_data, tmp_path))
    assert settings.storage.backend == "s3"
    assert settings.storage.data_dir == Path("/var/lib/moorage")
    assert settings.listen.host == "0.0.0.0"


def test_load_balancer_settings(tmp_path: Path) -> None:
    user_data = rendered(
        "--bucket", "my-registry", "--prefix", "/registry", "--htpasswd-user", "alice", *LB
    )
    settings = load_settings(embedded_config(user_data, tmp_path))
    s3 = settings.storage.s3
    assert (s3.bucket, s3.prefix, s3.redirect, s3.region) == ("my-registry", "registry", True, None)
    assert settings.proxy.trusted == ["10.0.0.0/16"]
    assert settings.tls.cert is None
    assert settings.auth.htpasswd == Path("/etc/moorage/htpasswd")
    assert settings.allow_anonymous_network is False


def test_tls_settings(tmp_path: Path) -> None:
    user_data = rendered(
        "--bucket",
        "b-1",
        "--region",
        "us-west-2",
        "--no-redirect",
        "--port",
        "443",
        "--htpasswd-user",
        "alice",
        *TLS,
    )
    settings = load_settings(embedded_config(user_data, tmp_path))
    assert settings.tls.cert == Path("/etc/pki/moorage/cert.pem")
    assert settings.tls.key == Path("/etc/pki/moorage/key.pem")
    assert settings.listen.port == 443
    assert settings.storage.s3.region == "us-west-2"
    assert settings.storage.s3.redirect is False
    assert settings.proxy.trusted == []


def test_user_data_holds_no_credentials_and_installs_the_requested_package(tmp_path: Path) -> None:
    user_data = rendered(
        "--bucket", "my-registry", "--htpasswd-user", "alice", *LB, "--package", "moorage==9.9.9"
    )
    s3 = load_settings(embedded_config(user_data, tmp_path)).storage.s3
    assert (s3.access_key_id, s3.secret_access_key, s3.session_token) == (None, None, None)
    for word in ("AWS_SECRET", "AWS_KEY", "secret_access_key", "password:"):
        assert word not in user_data
    install = files_of(user_data)["/usr/local/sbin/moorage-install"]["content"]
    assert "PACKAGE=moorage==9.9.9\n" in install
    assert "HTPASSWD_USERS=(alice)\n" in install


def test_default_package_is_this_version() -> None:
    from importlib.metadata import version

    assert f"--package moorage=={version('moorage')}" in rendered(
        "--bucket", "my-registry", "--htpasswd-user", "alice", *LB
    )


def test_hostile_values_stay_data(tmp_path: Path) -> None:
    """A user name with shell metacharacters is quoted, never run."""
    name = "eve$(touch${IFS}/tmp/pwned);`id`'\""
    user_data = rendered("--bucket", "my-registry", "--htpasswd-user", name, *LB)
    install = files_of(user_data)["/usr/local/sbin/moorage-install"]["content"]
    parameters = install.split("# --- parameters", 1)[1].split("# --- end parameters", 1)[0]
    script = tmp_path / "parameters.sh"
    script.write_text(parameters.split("\n", 1)[1] + '\nprintf "%s\\n" "${HTPASSWD_USERS[@]}"\n')
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, check=True)
    assert result.stdout == name + "\n"
    # The recorded command line round-trips through a shell too.
    command = re.search(r"^# Rendered by: (.*)$", user_data, re.MULTILINE)
    assert command is not None
    assert name in shlex.split(command.group(1))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bucket", "my-registry", "--htpasswd-user", "alice"], "choose one"),
        (["--bucket", "my-registry", "--htpasswd-user", "alice", *LB, *TLS], "choose one"),
        (
            ["--bucket", "my-registry", "--htpasswd-user", "alice", "--behind-load-balancer"],
            "needs --trusted-proxy",
        ),
        (
            [
                "--bucket",
                "my-registry",
                "--htpasswd-user",
                "alice",
                "--trusted-proxy",
                "10.0.0.0/8",
                *TLS,
            ],
            "goes with --behind-load-balancer",
        ),
        (
            [
                "--bucket",
                "my-registry",
                "--htpasswd-user",
                "alice",
                "--behind-load-balancer",
                "--trusted-proxy",
                "the-vpc",
            ],
            "not an IP address or CIDR",
        ),
        (["--bucket", "my-registry", *LB], "open to anyone"),
        (["--bucket", "My_Bucket", "--htpasswd-user", "alice", *LB], "not an S3 bucket name"),
        (["--bucket", "b-1", "--region", "eu west", "--htpasswd-user", "alice", *LB], "--region"),
        (
            ["--bucket", "b-1", "--htpasswd-user", "alice", "--tls-cert-path", "/c.pem"],
            "must be given together",
        ),
        (
            [
                "--bucket",
                "b-1",
                "--htpasswd-user",
                "alice",
                "--tls-cert-path",
                "c.pem",
                "--tls-key-path",
                "/k.pem",
            ],
            "absolute",
        ),
        (["--bucket", "b-1", "--htpasswd-user", "a:b", *LB], "--htpasswd-user"),
        (
            ["--bucket", "b-1", "--htpasswd-user", "alice", *LB, "--prefix", "x\nruncmd: [reboot]"],
            "--prefix",
        ),
        (
            ["--bucket", "b-1", "--htpasswd-user", "alice", *LB, "--package", "moorage; rm -rf /"],
            "--package",
        ),
        (["--bucket", "b-1", "--htpasswd-user", "alice", *LB, "--port", "70000"], "--port"),
    ],
)
def test_unworkable_options_are_refused(args: list[str], message: str) -> None:
    result = render(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "#cloud-config" not in result.output


# --- a cluster node (docs/deploy/cluster.md) ----------------------------------------------------

CLUSTER = [
    "--bucket",
    "my-registry",
    *LB,
    "--database-url",
    "postgresql://moorage@db.internal:5432/moorage",
    "--public-url",
    "https://registry.example.com",
    "--shared-config",
    "s3://my-registry-config/cluster/",
]


def test_cluster_node_settings(tmp_path: Path) -> None:
    """Every node rendered from the same flags reads the same PostgreSQL, names the load
    balancer as the tokens' issuer, and signs with the shared key copied at boot."""
    user_data = rendered(*CLUSTER)
    settings = load_settings(embedded_config(user_data, tmp_path))
    assert settings.database.url == "postgresql+psycopg://moorage@db.internal:5432/moorage"
    assert settings.auth.token.issuer == "https://registry.example.com"
    assert settings.auth.token.key_file == Path("/etc/moorage/token-key.pem")
    assert settings.auth.token.cert_file == Path("/etc/moorage/token-cert.pem")
    assert settings.auth.htpasswd == Path("/etc/moorage/htpasswd")
    assert settings.auth.policy_file == Path("/etc/moorage/policy.yaml")
    assert settings.proxy.trusted == ["10.0.0.0/16"]
    assert settings.storage.s3.redirect is True

    install = files_of(user_data)["/usr/local/sbin/moorage-install"]["content"]
    bash_syntax_ok(install, tmp_path)
    assert "SHARED_CONFIG=s3://my-registry-config/cluster/\n" in install
    assert "SHARED_FILES=(token-key.pem token-cert.pem htpasswd policy.yaml)\n" in install
    assert "OPTIONAL_SHARED_FILES=(pgpass)\n" in install
    assert "HTPASSWD_USERS=()\n" in install
    assert "psycopg[binary]" in install
    # The recorded command renders the same user-data again.
    command = re.search(r"^# Rendered by: (.*)$", user_data, re.MULTILINE)
    assert command is not None
    assert rendered(*shlex.split(command.group(1))[3:]) == user_data


def test_single_node_user_data_copies_nothing(tmp_path: Path) -> None:
    user_data = rendered("--bucket", "my-registry", "--htpasswd-user", "alice", *LB)
    install = files_of(user_data)["/usr/local/sbin/moorage-install"]["content"]
    assert "SHARED_CONFIG=''\n" in install
    assert "database" not in load_settings(embedded_config(user_data, tmp_path)).model_dump(
        exclude_defaults=True
    )


def test_shared_files_copy_runs_on_a_bucket(tmp_path: Path) -> None:
    """The copy step of the install script, run as written against a local object store
    (obstore's file:// stands in for s3://): required files arrive, a missing optional one
    is skipped, a missing required one stops the install."""
    install = template("install.sh")
    snippet = install.split("<<'PY'\n", 1)[1].split("\nPY\n", 1)[0]
    source = tmp_path / "bucket" / "cluster"
    source.mkdir(parents=True)
    for name in ("token-key.pem", "htpasswd"):
        (source / name).write_text(f"{name} contents\n")
    target = tmp_path / "etc"
    target.mkdir()
    script = tmp_path / "copy.py"
    script.write_text(snippet.replace('region=os.environ["AWS_REGION"]', ""))

    def run(*names: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(script), f"file://{source}/", str(target), *names]
        return subprocess.run(argv, capture_output=True, text=True, check=False)

    copied = run("token-key.pem", "htpasswd", "--", "pgpass")
    assert copied.returncode == 0, copied.stderr
    assert (target / "htpasswd").read_text() == "htpasswd contents\n"
    assert (target / "token-key.pem").stat().st_mode & 0o077 == 0
    assert not (target / "pgpass").exists()
    missing = run("token-key.pem", "policy.yaml", "--")
    assert missing.returncode != 0
    assert "policy.yaml is missing" in missing.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--database-url": "postgresql://moorage:s3cret@db/moorage"}, "must not hold a password"),
        ({"--database-url": "mysql://db/moorage"}, "must be a PostgreSQL URL"),
        ({"--public-url": "registry.example.com"}, "--public-url must be"),
        ({"--public-url": "https://registry.example.com/v2/"}, "--public-url must be"),
        ({"--shared-config": "https://bucket/cluster/"}, "--shared-config must be"),
        ({"--public-url": None}, "needs --public-url"),
        ({"--shared-config": None}, "needs --shared-config"),
    ],
)
def test_unworkable_cluster_options_are_refused(
    change: dict[str, str | None], message: str
) -> None:
    args = list(CLUSTER)
    for flag, value in change.items():
        index = args.index(flag)
        if value is None:
            del args[index : index + 2]
        else:
            args[index + 1] = value
    result = render(*args)
    assert result.exit_code != 0
    assert message in result.output


def test_cluster_node_refuses_per_instance_users_and_lone_cluster_flags() -> None:
    users = render(*CLUSTER, "--htpasswd-user", "alice")
    assert users.exit_code != 0 and "nodes would disagree" in users.output
    lone = render(
        "--bucket", "b-1", "--htpasswd-user", "alice", *LB, "--public-url", "https://r.example"
    )
    assert lone.exit_code != 0 and "goes with --database-url" in lone.output


# --- docs/deploy ---------------------------------------------------------------------------------


def test_the_documented_example_is_the_rendered_output() -> None:
    """docs/deploy/cloud-init.md shows what its recorded command renders, byte for byte."""
    doc = (DOCS / "cloud-init.md").read_text()
    example = re.search(r"```yaml\n(#cloud-config\n.*?)```", doc, re.DOTALL)
    assert example is not None
    command = re.search(r"^# Rendered by: (.*)$", example.group(1), re.MULTILINE)
    assert command is not None
    argv = shlex.split(command.group(1))
    assert argv[:3] == ["moorage", "deploy", "cloud-init"]
    assert rendered(*argv[3:]) == example.group(1)


def test_documented_unit_is_the_packaged_unit() -> None:
    assert (DOCS / "moorage.service").read_text() == template("moorage.service")


def unit_settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_systemd_unit_is_hardened_and_restarts() -> None:
    unit = unit_settings((DOCS / "moorage.service").read_text())
    expected = {
        "User": "moorage",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/moorage",
        "Restart": "on-failure",
        "StateDirectory": "moorage",
        "WantedBy": "multi-user.target",
    }
    for key, value in expected.items():
        assert unit.get(key) == [value], key
    assert unit["ExecStart"] == [
        "/opt/moorage/bin/moorage serve --config /etc/moorage/moorage.yaml"
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The venv is not installed here: point ExecStart at a real executable, change nothing else.
    unit = (
        (DOCS / "moorage.service")
        .read_text()
        .replace("/opt/moorage/bin/moorage", shutil.which("true") or "/bin/true")
    )
    path = tmp_path / "moorage.service"
    path.write_text(unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, cwd=tmp_path
    )
    # verify exits 0 on unknown keys and bad values, and only warns: any output is a failure.
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if "moorage.service" in line] == []


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = (DOCS / "Containerfile").read_text().replace("\\\n", " ")
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_containerfile_has_the_expected_instructions() -> None:
    steps = containerfile()
    instructions = [name for name, _ in steps]
    args = dict(steps)
    assert steps[0][0] == "FROM" and "python:3" in steps[0][1] and "slim" in steps[0][1]
    user = args["USER"]
    assert user not in ("root", "0", "0:0")
    # The image runs as that user: USER comes after the last RUN.
    assert instructions.index("USER") > max(i for i, n in enumerate(instructions) if n == "RUN")
    assert args["EXPOSE"] == "5000"
    assert json.loads(args["ENTRYPOINT"]) == ["moorage", "serve", "--host", "0.0.0.0"]
    assert "/_ping" in args["HEALTHCHECK"]
    # No credentials baked in.
    assert not any(n in ("ENV", "ARG") and "AWS_" in a for n, a in steps)


class _Ping(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/_ping" else 404)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def ping_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ping)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_containerfile_healthcheck_command_reaches_ping(ping_server: int) -> None:
    healthcheck = dict(containerfile())["HEALTHCHECK"]
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    env = {"PATH": os.environ["PATH"], "MOORAGE_LISTEN__PORT": str(ping_server)}
    ok = subprocess.run(
        [shutil.which("python3") or "python3", "-c", command[2]], env=env, timeout=20
    )
    assert ok.returncode == 0
    # Nothing listening: the check fails, so the container is reported unhealthy.
    env["MOORAGE_LISTEN__PORT"] = "1"
    down = subprocess.run(
        [shutil.which("python3") or "python3", "-c", command[2]],
        env=env,
        capture_output=True,
        timeout=20,
    )
    assert down.returncode != 0
