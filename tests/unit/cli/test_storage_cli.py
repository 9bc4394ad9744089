"""``moorage storage check`` against the filesystem and an S3 server (moto on loopback): an
operator sees "ok" only when a probe object was really written, read and deleted, and a plain
sentence (never a traceback or a secret) when not. ``moorage serve`` refuses a missing bucket."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from moorage.classic_env import CLASSIC_VARIABLES
from moorage.cli.main import main

SECRET = "moto-secret-do-not-print"


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=_free_port())
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
    ).create_bucket(Bucket=name)


def s3_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, bucket: str) -> None:
    """The classic variables, as the old `docker run` line passed them."""
    for name, value in {
        "SETTINGS_FLAVOR": "s3",
        "AWS_BUCKET": bucket,
        "STORAGE_PATH": "/registry",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_KEY": "testing",
        "AWS_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    import boto3

    listing = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key=SECRET,
    ).list_objects_v2(Bucket=bucket)
    return [item["Key"] for item in listing.get("Contents", [])]


def test_s3_ok_with_the_classic_variables(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str
) -> None:
    make_bucket(moto_endpoint, "registry-ok")
    s3_env(monkeypatch, moto_endpoint, "registry-ok")
    result = check()
    assert result.exit_code == 0, result.output
    assert result.output == (
        "ok: wrote, read and deleted a probe object in s3://registry-ok/registry\n"
    )
    assert bucket_keys(moto_endpoint, "registry-ok") == []


def test_s3_missing_bucket_is_named(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> None:
    s3_env(monkeypatch, moto_endpoint, "no-such-bucket-here")
    result = check()
    assert result.exit_code == 1
    assert result.output.startswith(
        "Error: storage check failed for s3://no-such-bucket-here/registry: "
    )
    assert "no such bucket" in result.output.lower()
    assert "Traceback" not in result.output
    assert SECRET not in result.output


def test_s3_unreachable_endpoint_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    s3_env(monkeypatch, f"http://127.0.0.1:{_free_port()}", "registry")
    result = check()
    assert result.exit_code == 1
    assert "unreachable" in result.output
    assert SECRET not in result.output


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """`serve` hands its flags to its workers through os.environ; undo that afterwards."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("restored_environment")
def test_serve_refuses_a_missing_bucket_plainly(
    monkeypatch: pytest.MonkeyPatch, moto_endpoint: str, tmp_path: Path
) -> None:
    s3_env(monkeypatch, moto_endpoint, "gone-bucket")
    result = CliRunner().invoke(
        main, ["serve", "--data-dir", str(tmp_path / "data"), "--port", str(_free_port())]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: storage: ")
    assert "no such bucket" in result.output.lower()
    assert "Traceback" not in result.output
