"""The classic docker-registry's variables work unchanged, in their documented precedence:
flags > MOORAGE_* > classic variables > YAML file > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from moorage.classic_env import CLASSIC_VARIABLES, ClassicEnvError, classic_settings
from moorage.cli.main import main
from moorage.config import ConfigError, load_settings

# The line from the 2014 recipe (docs/storage.md), minus `docker run`.
CLASSIC_LINE = {
    "SETTINGS_FLAVOR": "s3",
    "AWS_BUCKET": "my-registry-bucket",
    "STORAGE_PATH": "/registry",
    "STORAGE_REDIRECT": "true",
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither MOORAGE_* nor classic variables from the outside world."""
    for name in list(os.environ):
        if name.upper().startswith("MOORAGE_") or name in CLASSIC_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def setenv(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


# --- the pure mapping ----------------------------------------------------------------------------


def test_the_classic_line_maps_to_s3_storage() -> None:
    assert classic_settings(CLASSIC_LINE) == {
        "storage": {
            "backend": "s3",
            "s3": {"bucket": "my-registry-bucket", "prefix": "registry", "redirect": True},
        }
    }


def test_no_classic_variables_means_no_settings() -> None:
    assert classic_settings({"HOME": "/root", "PATH": "/bin"}) == {}


def test_empty_values_are_unset() -> None:
    # `docker run -e AWS_BUCKET=` sets an empty value.
    assert classic_settings({"AWS_BUCKET": "", "SETTINGS_FLAVOR": " "}) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("True", True),
        ("TRUE", True),
        ("false", False),
        ("False", False),
        ("yes", True),
        ("off", False),
    ],
)
def test_storage_redirect_any_case(value: str, expected: bool) -> None:
    assert classic_settings({"STORAGE_REDIRECT": value})["storage"]["s3"]["redirect"] is expected


def test_storage_redirect_nonsense_is_refused_by_name() -> None:
    with pytest.raises(ClassicEnvError, match="STORAGE_REDIRECT must be true or false"):
        classic_settings({"STORAGE_REDIRECT": "sometimes"})


@pytest.mark.parametrize("flavor", ["local", "dev", "LOCAL"])
def test_local_flavors_are_the_filesystem_and_storage_path_is_the_directory(flavor: str) -> None:
    assert classic_settings({"SETTINGS_FLAVOR": flavor, "STORAGE_PATH": "/srv/registry"}) == {
        "storage": {"backend": "filesystem", "data_dir": "/srv/registry"}
    }


def test_unsupported_flavor_is_refused_by_name() -> None:
    with pytest.raises(ClassicEnvError, match=r"SETTINGS_FLAVOR='gcs' is not supported"):
        classic_settings({"SETTINGS_FLAVOR": "gcs"})


def test_region_and_endpoint() -> None:
    s3 = classic_settings({"AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"})[
        "storage"
    ]["s3"]
    assert s3 == {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:9000"}


def test_old_registry_credential_names() -> None:
    s3 = classic_settings({"AWS_KEY": "AKIAOLD", "AWS_SECRET": "old-secret"})["storage"]["s3"]
    assert s3 == {"access_key_id": "AKIAOLD", "secret_access_key": "old-secret"}


def test_sdk_credential_names_with_session_token() -> None:
    s3 = classic_settings(
        {
            "AWS_ACCESS_KEY_ID": "ASIANEW",
            "AWS_SECRET_ACCESS_KEY": "new-secret",
            "AWS_SESSION_TOKEN": "tok",
        }
    )["storage"]["s3"]
    assert s3 == {
        "access_key_id": "ASIANEW",
        "secret_access_key": "new-secret",
        "session_token": "tok",
    }


def test_old_names_win_and_pairs_are_never_mixed() -> None:
    s3 = classic_settings(
        {
            "AWS_KEY": "AKIAOLD",
            "AWS_SECRET": "old-secret",
            "AWS_ACCESS_KEY_ID": "ASIANEW",
            "AWS_SECRET_ACCESS_KEY": "new-secret",
            "AWS_SESSION_TOKEN": "tok",  # belongs to the SDK pair, not to AWS_KEY
        }
    )["storage"]["s3"]
    assert s3 == {"access_key_id": "AKIAOLD", "secret_access_key": "old-secret"}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AWS_KEY": "AKIA"}, "AWS_KEY is set but AWS_SECRET is not"),
        (
            {"AWS_SECRET_ACCESS_KEY": "s3cr3t-value"},
            "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not",
        ),
    ],
)
def test_half_a_credential_pair_is_refused_without_echoing_it(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ClassicEnvError) as info:
        classic_settings(environ)
    assert message in str(info.value)
    assert "s3cr3t-value" not in str(info.value)


def test_no_credentials_means_the_default_chain() -> None:
    # An EC2 instance role: nothing in the environment, nothing in the settings.
    s3 = classic_settings(CLASSIC_LINE)["storage"]["s3"]
    assert not {"access_key_id", "secret_access_key", "session_token"} & set(s3)


# --- through load_settings: precedence ----------------------------------------------------------


def test_classic_line_through_load_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, **CLASSIC_LINE)
    s3 = load_settings().storage
    assert s3.backend == "s3"
    assert (s3.s3.bucket, s3.s3.prefix, s3.s3.redirect) == ("my-registry-bucket", "registry", True)
    assert s3.s3.access_key_id is None  # the instance role, through the default chain


def test_precedence_flags_moorage_classic_file_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text(
        "storage:\n  backend: s3\n  s3:\n"
        "    bucket: from-file\n    prefix: file-prefix\n    region: file-region\n"
        "    endpoint_url: http://file:9000\n    redirect_expiry_seconds: 60\n"
    )
    setenv(
        monkeypatch,
        AWS_BUCKET="from-classic",
        AWS_REGION="classic-region",
        STORAGE_PATH="/classic-prefix",
        MOORAGE_STORAGE__S3__BUCKET="from-moorage",
        MOORAGE_STORAGE__S3__REGION="moorage-region",
    )
    s3 = load_settings(config, storage={"s3": {"bucket": "from-flag"}}).storage.s3
    assert s3.bucket == "from-flag"  # flag > MOORAGE_* > classic > file
    assert s3.region == "moorage-region"  # MOORAGE_* > classic > file
    assert s3.prefix == "classic-prefix"  # classic > file
    assert s3.endpoint_url == "http://file:9000"  # file > default
    assert s3.redirect_expiry_seconds == 60
    assert s3.part_size_bytes == 8 * 1024 * 1024  # default


def test_moorage_backend_beats_classic_flavor(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, SETTINGS_FLAVOR="s3", MOORAGE_STORAGE__BACKEND="filesystem")
    assert load_settings().storage.backend == "filesystem"


def test_classic_flavor_beats_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("storage:\n  backend: filesystem\n  s3:\n    bucket: b\n")
    setenv(monkeypatch, SETTINGS_FLAVOR="s3")
    settings = load_settings(config)
    assert (settings.storage.backend, settings.storage.s3.bucket) == ("s3", "b")


# --- validation -----------------------------------------------------------------------------------


def test_s3_without_a_bucket_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, SETTINGS_FLAVOR="s3")
    with pytest.raises(ConfigError, match=r"storage\.s3\.bucket"):
        load_settings()


def test_s3_without_a_bucket_in_the_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("storage:\n  backend: s3\n")
    with pytest.raises(ConfigError, match=r"storage\.s3\.bucket"):
        load_settings(config)


def test_filesystem_needs_no_bucket() -> None:
    assert load_settings().storage.backend == "filesystem"


def test_endpoint_must_be_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, AWS_ENDPOINT_URL="minio:9000")
    with pytest.raises(ConfigError, match=r"storage\.s3\.endpoint_url: .*http:// or https://"):
        load_settings()


def test_prefix_slashes_are_normalised_from_any_source(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("storage:\n  s3:\n    prefix: /registry/\n")
    assert load_settings(config).storage.s3.prefix == "registry"


def test_bad_classic_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    setenv(monkeypatch, STORAGE_REDIRECT="maybe")
    with pytest.raises(ConfigError, match="STORAGE_REDIRECT"):
        load_settings()


# --- config check shows them, secrets masked ---------------------------------------------------


def test_config_check_shows_classic_settings_and_masks_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("{}\n")
    setenv(
        monkeypatch,
        **CLASSIC_LINE,
        AWS_KEY="AKIAEXAMPLEKEY",
        AWS_SECRET="wJalrXUtnFEMI-very-secret",
    )
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code == 0, result.output
    assert '"bucket": "my-registry-bucket"' in result.output
    assert '"backend": "s3"' in result.output
    assert "wJalrXUtnFEMI-very-secret" not in result.output
    assert '"secret_access_key": "**********"' in result.output


def test_config_check_names_the_missing_bucket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("{}\n")
    setenv(
        monkeypatch, SETTINGS_FLAVOR="s3", AWS_SECRET_ACCESS_KEY="zzz-secret", AWS_ACCESS_KEY_ID="k"
    )
    result = CliRunner().invoke(main, ["config", "check", str(config)])
    assert result.exit_code != 0
    assert "storage.s3.bucket" in result.output
    assert "zzz-secret" not in result.output
