"""``moorage storage check`` against the filesystem and an S3 server (moto on loopback): an
operator sees "ok" only when a probe object was really written, read and deleted, and a plain
sentence (never a traceback or a secret) when not. ``moorage serve`` refuses a missing bucket."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from moorage.classic_env import CLASSIC_VARIABLES
from moorage.cli.main import main
from tests.support_s3 import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    FaultyProxy,
    MotoServer,
    free_port,
    moto_server,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MOORAGE_") or name in CLASSIC_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def check(*args: str) -> Result:
    return CliRunner().invoke(main, ["storage", "check", *args])


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "moorage.yaml"
    path.write_text(text)
    return path


# --- filesystem ----------------------------------------------------------------------------------


def test_filesystem_ok_and_leaves_nothing_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = check("--config", str(write_config(tmp_path, f"storage:\n  data_dir: {data}\n")))
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: wrote, read and deleted a probe object in {data}\n"
    leftovers = [p for p in data.rglob("*") if p.is_file()]
    assert leftovers == []


def test_filesystem_unusable_directory_is_a_plain_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the data directory should be")
    result = check("--config", str(write_config(tmp_path, f"storage:\n  data_dir: {blocker}\n")))
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: storage check failed for {blocker}: ")
    assert "Traceback" not in result.output


def test_invalid_configuration_is_named(tmp_path: Path) -> None:
    result = check("--config", str(write_config(tmp_path, "storage:\n  backend: s3\n")))
    assert result.exit_code == 1
    assert "storage.s3.bucket" in result.output


# --- S3 (moto) -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with moto_server("registry-ok") as server:
        yield server


def s3_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str) -> None:
    """The classic variables, as the old `docker run` line passed them."""
    for name, value in {
        "SETTINGS_FLAVOR": "s3",
        "AWS_BUCKET": bucket,
        "STORAGE_PATH": "/registry",
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_KEY": ACCESS_KEY,
        "AWS_SECRET": SECRET_KEY,
    }.items():
        monkeypatch.setenv(name, value)


def bucket_keys(moto: MotoServer) -> list[str]:
    # moto answers unsigned requests: a ListObjectsV2 without an SDK.
    listing = httpx.get(f"{moto.endpoint}/{moto.bucket}?list-type=2", timeout=10)
    listing.raise_for_status()
    return re.findall(r"<Key>([^<]*)</Key>", listing.text)


def test_s3_ok_with_the_classic_variables(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer
) -> None:
    s3_env(monkeypatch, moto.endpoint, moto.bucket)
    result = check()
    assert result.exit_code == 0, result.output
    assert result.output == (
        "ok: wrote, read and deleted a probe object in s3://registry-ok/registry\n"
    )
    assert bucket_keys(moto) == []


def test_s3_missing_bucket_is_named(monkeypatch: pytest.MonkeyPatch, moto: MotoServer) -> None:
    s3_env(monkeypatch, moto.endpoint, "no-such-bucket-here")
    result = check()
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: storage check failed for s3://no-such-bucket-here/registry: "
    )
    assert "no such bucket" in result.output.lower()
    assert "Traceback" not in result.output
    assert SECRET_KEY not in result.output


def test_s3_unreachable_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, f"http://127.0.0.1:{free_port()}", "registry")
    result = check()
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert SECRET_KEY not in result.output


# moto checks signatures and IAM policies once its first few requests are spent: these three
# create the bucket, a user without any policy, and that user's key.
IAM_SETUP_ACTIONS = "3"


@pytest.fixture(scope="module")
def moto_with_iam() -> Iterator[tuple[MotoServer, str, str]]:
    """A moto server that enforces IAM, and the key of a user allowed nothing."""
    import boto3

    env = {"INITIAL_NO_AUTH_ACTION_COUNT": IAM_SETUP_ACTIONS}
    with moto_server("registry-locked", env=env) as server:
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        iam.create_user(UserName="nobody")
        key = iam.create_access_key(UserName="nobody")["AccessKey"]
        yield server, key["AccessKeyId"], key["SecretAccessKey"]


@pytest.mark.parametrize("credentials", ["unknown key", "wrong secret", "no permission"])
def test_s3_access_denied_is_named(
    monkeypatch: pytest.MonkeyPatch, moto_with_iam: tuple[MotoServer, str, str], credentials: str
) -> None:
    server, key_id, secret = moto_with_iam
    s3_env(monkeypatch, server.endpoint, server.bucket)
    key_id, secret = {
        "unknown key": ("AKIAUNKNOWNKEY000000", secret),
        "wrong secret": (key_id, "x" * 40),
        "no permission": (key_id, secret),
    }[credentials]
    monkeypatch.setenv("AWS_KEY", key_id)
    monkeypatch.setenv("AWS_SECRET", secret)
    result = check()
    assert result.exit_code == 1
    assert result.output == (
        "Error: storage check failed for s3://registry-locked/registry: access denied to "
        "bucket 'registry-locked' (check the credentials)\n"
    )


def test_s3_wrong_region_is_named(monkeypatch: pytest.MonkeyPatch, moto: MotoServer) -> None:
    """moto serves every region, so a proxy gives AWS's answer to a request signed for the
    wrong one: 400 AuthorizationHeaderMalformed."""
    proxy = FaultyProxy(moto.endpoint)
    try:
        proxy.fail_with = (400, "AuthorizationHeaderMalformed")
        s3_env(monkeypatch, proxy.endpoint, moto.bucket)
        result = check()
    finally:
        proxy.close()
    assert result.exit_code == 1
    assert "wrong region for bucket 'registry-ok' (set storage.s3.region)" in result.output


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """`serve` hands its flags to its workers through os.environ; undo that afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("restored_environment")
def test_serve_refuses_a_missing_bucket_plainly(
    monkeypatch: pytest.MonkeyPatch, moto: MotoServer, tmp_path: Path
) -> None:
    s3_env(monkeypatch, moto.endpoint, "gone-bucket")
    result = CliRunner().invoke(
        main, ["serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: storage: ")
    assert "no such bucket" in result.output.lower()
    assert "Traceback" not in result.output
