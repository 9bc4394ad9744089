"""Settings: YAML file < MOORAGE_* environment < command-line flags, and ConfigError messages."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moorage import cpus
from moorage.config import CONFIG_FILE_VARIABLE, ConfigError, Settings, load_settings
from moorage.cpus import auto_workers


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MOORAGE_* variable from the outside world, and a private working directory."""
    for name in list(os.environ):
        if name.upper().startswith("MOORAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "moorage.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def config_error(config_file: Path | None = None, **overrides: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(config_file, **overrides)
    return str(info.value)


# --- defaults and the file ---------------------------------------------------------------------


def test_defaults_without_a_file(tmp_path: Path) -> None:
    s = load_settings()
    assert isinstance(s, Settings)
    assert (s.listen.host, s.listen.port) == ("127.0.0.1", 5000)
    assert s.storage.data_dir == Path("moorage-data")
    assert s.database.url == ""
    assert s.limits.manifest_max_bytes == 4 * 1024 * 1024
    assert s.limits.page_size_max == 1000
    assert s.limits.page_size_default == 1000
    assert s.limits.upload_expiry_seconds == 86400
    assert s.limits.body_idle_timeout_seconds == 30
    assert s.limits.header_max_bytes == 16 * 1024
    assert s.delete_enabled is True
    assert s.workers == auto_workers()
    assert s.log.level == "info"
    assert s.database_url == f"sqlite:///{tmp_path.resolve() / 'moorage-data' / 'moorage.db'}"


def test_values_from_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
listen:
  host: 0.0.0.0
  port: 6000
storage:
  data_dir: /srv/moorage
database:
  url: postgresql://db/moorage
limits:
  manifest_max_bytes: 1024
delete_enabled: false
workers: 4
log_level: debug
""",
    )
    s = load_settings(path)
    assert (s.listen.host, s.listen.port) == ("0.0.0.0", 6000)
    assert s.storage.data_dir == Path("/srv/moorage")
    assert s.database_url == "postgresql://db/moorage"
    assert s.limits.manifest_max_bytes == 1024
    assert s.limits.page_size_max == 1000  # untouched keys keep their defaults
    assert s.delete_enabled is False
    assert s.workers == 4
    assert s.log.level == "debug"


def test_file_named_by_moorage_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(write(tmp_path, "workers: 3\n")))
    assert load_settings().workers == 3


def test_explicit_file_beats_moorage_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(write(tmp_path, "workers: 3\n", "env.yaml")))
    assert load_settings(write(tmp_path, "workers: 5\n", "flag.yaml")).workers == 5


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    assert load_settings(write(tmp_path, text)).model_dump() == load_settings().model_dump()


# --- precedence --------------------------------------------------------------------------------


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "listen:\n  host: 0.0.0.0\n  port: 6000\nworkers: 2\nlog_level: debug\n")
    monkeypatch.setenv("MOORAGE_LISTEN__PORT", "7000")
    monkeypatch.setenv("MOORAGE_WORKERS", "8")
    monkeypatch.setenv("MOORAGE_DELETE_ENABLED", "false")
    s = load_settings(path)
    assert s.listen.port == 7000
    assert s.listen.host == "0.0.0.0"  # the rest of the file's section survives
    assert s.workers == 8
    assert s.delete_enabled is False
    assert s.log.level == "debug"


def test_flags_override_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "listen:\n  host: 0.0.0.0\n  port: 6000\nworkers: 2\n")
    monkeypatch.setenv("MOORAGE_LISTEN__PORT", "7000")
    monkeypatch.setenv("MOORAGE_WORKERS", "8")
    s = load_settings(path, listen={"port": 8000}, workers=16)
    assert s.listen.port == 8000
    assert s.listen.host == "0.0.0.0"
    assert s.workers == 16


def test_flags_override_env_without_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_LOG__LEVEL", "warning")
    monkeypatch.setenv("MOORAGE_LISTEN__HOST", "10.0.0.1")
    s = load_settings(log={"level": "error"}, listen={"port": 9000})
    assert s.log.level == "error"
    assert (s.listen.host, s.listen.port) == ("10.0.0.1", 9000)


def test_env_json_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_LIMITS", '{"page_size_max": 50}')
    assert load_settings().limits.page_size_max == 50


def test_explicit_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_DATABASE__URL", "sqlite:////tmp/x.db")
    assert load_settings().database_url == "sqlite:////tmp/x.db"


# --- errors name the key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus: 1\n", "bogus"),
        ("listen:\n  bogus: 1\n", "listen.bogus"),
        ("listen:\n  port: 70000\n", "listen.port"),
        ("listen:\n  port: -1\n", "listen.port"),
        ("listen:\n  port: http\n", "listen.port"),
        ("listen: 5000\n", "listen"),
        ("limits:\n  manifest_max_bytes: 0\n", "limits.manifest_max_bytes"),
        ("limits:\n  page_size_max: -5\n", "limits.page_size_max"),
        ("limits:\n  upload_expiry_seconds: soon\n", "limits.upload_expiry_seconds"),
        ("limits:\n  body_idle_timeout_seconds: 0\n", "limits.body_idle_timeout_seconds"),
        ("limits:\n  header_max_bytes: 512\n", "limits.header_max_bytes"),
        ("workers: 0\n", "workers"),
        ("workers: 65\n", "workers"),
        ("delete_enabled: perhaps\n", "delete_enabled"),
        ("storage:\n  datadir: /x\n", "storage.datadir"),
        ("cluster:\n  node_timeout: 1s\n", "cluster.node_timeout"),
    ],
)
def test_bad_file_key_or_value_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    message = config_error(write(tmp_path, text))
    assert message.startswith(f"{key}: ")


def test_every_offending_key_is_named(tmp_path: Path) -> None:
    message = config_error(write(tmp_path, "workers: 0\nlisten:\n  port: 99999\nbogus: 1\n"))
    lines = message.splitlines()
    assert len(lines) == 3
    assert {line.split(":", 1)[0] for line in lines} == {"workers", "listen.port", "bogus"}


@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("MOORAGE_WORKERS", "many", "workers"),
        ("MOORAGE_WORKERS", "0", "workers"),
        ("MOORAGE_LISTEN__PORT", "99999", "listen.port"),
        ("MOORAGE_LISTEN__BOGUS", "1", "listen.bogus"),
        ("MOORAGE_LIMITS__MANIFEST_MAX_BYTES", "0", "limits.manifest_max_bytes"),
        ("MOORAGE_LIMITS__BODY_IDLE_TIMEOUT_SECONDS", "-1", "limits.body_idle_timeout_seconds"),
        ("MOORAGE_DELETE_ENABLED", "perhaps", "delete_enabled"),
    ],
)
def test_bad_env_value_names_the_key(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str
) -> None:
    monkeypatch.setenv(variable, value)
    assert config_error().startswith(f"{key}: ")


def test_bad_flag_names_the_key() -> None:
    assert config_error(listen={"port": 65536}).startswith("listen.port: ")
    assert config_error(workers="x").startswith("workers: ")
    assert config_error(bogus=True).startswith("bogus: ")


def test_bad_env_value_is_reported_even_when_the_file_is_fine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOORAGE_LISTEN__PORT", "-3")
    assert config_error(write(tmp_path, "listen:\n  port: 6000\n")).startswith("listen.port: ")


def test_flag_can_fix_a_bad_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_WORKERS", "0")
    assert load_settings(workers=2).workers == 2


# --- workers: auto ----------------------------------------------------------------------------


@pytest.fixture
def three_cpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    monkeypatch.setattr(cpus, "CGROUP_CPU_MAX", tmp_path / "no-cgroup-quota")


@pytest.mark.usefixtures("three_cpus")
def test_workers_auto_is_one_per_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings().workers == 3  # the default
    assert load_settings(write(tmp_path, "workers: auto\n")).workers == 3
    monkeypatch.setenv("MOORAGE_WORKERS", "auto")
    assert load_settings().workers == 3
    assert load_settings(workers="auto").workers == 3


@pytest.mark.usefixtures("three_cpus")
def test_explicit_workers_win_over_auto(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(write(tmp_path, "workers: 1\n")).workers == 1
    monkeypatch.setenv("MOORAGE_WORKERS", "5")
    assert load_settings(write(tmp_path, "workers: auto\n")).workers == 5
    monkeypatch.setenv("MOORAGE_WORKERS", "auto")
    assert load_settings(workers=2).workers == 2


def test_a_bad_workers_value_says_auto_is_allowed() -> None:
    assert config_error(workers="lots") == (
        "workers: Value error, a number of worker processes (1 to 64), or auto"
    )


# --- the file itself ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    message = config_error(missing)
    assert str(missing) in message
    assert "cannot read" in message


def test_missing_file_named_by_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_FILE_VARIABLE, str(tmp_path / "nope.yaml"))
    assert "nope.yaml" in config_error()


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert "cannot read" in config_error(tmp_path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "listen: [\n")
    message = config_error(path)
    assert "not valid YAML" in message
    assert str(path) in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_file(tmp_path: Path, text: str) -> None:
    assert "mapping" in config_error(write(tmp_path, text))


def test_non_string_key_is_a_config_error(tmp_path: Path) -> None:
    config_error(write(tmp_path, "1: foo\n"))


def test_non_json_section_in_env_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_LISTEN", "notjson")
    assert "listen" in config_error()


# --- properties --------------------------------------------------------------------------------


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(port=st.integers(-(2**20), 2**20), source=st.sampled_from(["env", "flag"]))
def test_port_is_accepted_exactly_in_range(
    monkeypatch: pytest.MonkeyPatch, port: int, source: str
) -> None:
    monkeypatch.delenv("MOORAGE_LISTEN__PORT", raising=False)
    overrides: dict[str, Any] = {}
    if source == "env":
        monkeypatch.setenv("MOORAGE_LISTEN__PORT", str(port))
    else:
        overrides["listen"] = {"port": port}
    if 0 <= port <= 65535:
        assert load_settings(**overrides).listen.port == port
    else:
        assert config_error(**overrides).startswith("listen.port: ")


def test_a_bad_trusted_proxy_is_named() -> None:
    with pytest.raises(ConfigError, match=r"proxy\.trusted.*'proxy\.example' is not an IP"):
        load_settings(proxy={"trusted": ["10.0.0.0/8", "proxy.example"]})
    assert load_settings(proxy={"trusted": ["10.0.0.1", "::1", "10.1.2.3/8"]}).proxy.trusted


# --- storage.accel_redirect (X-Accel-Redirect behind nginx) ----------------------------------


def test_accel_redirect_is_off_by_default_and_set_by_file_or_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().storage.accel_redirect is None
    path = write(tmp_path, "storage:\n  accel_redirect: /_moorage_blobs/\n")
    assert load_settings(path).storage.accel_redirect == "/_moorage_blobs/"
    monkeypatch.setenv("MOORAGE_STORAGE__ACCEL_REDIRECT", "/internal/blobs/")
    assert load_settings(path).storage.accel_redirect == "/internal/blobs/"
    monkeypatch.setenv("MOORAGE_STORAGE__ACCEL_REDIRECT", "")
    assert load_settings().storage.accel_redirect is None


@pytest.mark.parametrize(
    "prefix",
    [
        "_moorage_blobs/",
        "/_moorage_blobs",
        "/a/../b/",
        "/./",
        "/x?y/",
        "@blobs",
        "/a b/",
        "/%2e%2e/",
    ],
)
def test_a_bad_accel_redirect_prefix_is_named(prefix: str) -> None:
    assert config_error(storage={"accel_redirect": prefix}).startswith("storage.accel_redirect: ")


def test_accel_redirect_needs_the_filesystem_backend() -> None:
    message = config_error(
        storage={"backend": "s3", "s3": {"bucket": "b"}, "accel_redirect": "/_moorage_blobs/"}
    )
    assert "storage.accel_redirect works only with the filesystem backend" in message


# --- log and metrics sections --------------------------------------------------------------------


def test_log_and_metrics_sections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "log:\n  format: json\nmetrics:\n  token: s3cret\n")
    monkeypatch.setenv("MOORAGE_LOG__LEVEL", "warning")
    monkeypatch.setenv("MOORAGE_METRICS__ENABLED", "false")
    s = load_settings(path)
    assert (s.log.level, s.log.format) == ("warning", "json")
    assert s.metrics.enabled is False
    assert s.metrics.token is not None and s.metrics.token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s)


def test_top_level_log_level_still_read_unless_log_level_is_given(tmp_path: Path) -> None:
    old = write(tmp_path, "log_level: debug\n")
    assert load_settings(old).log.level == "debug"
    both = write(tmp_path, "log_level: debug\nlog:\n  level: error\n")
    assert load_settings(both).log.level == "error"
    assert load_settings(log_level="critical").log.level == "critical"


def test_bad_log_format_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"log\.format"):
        load_settings(write(tmp_path, "log:\n  format: xml\n"))


def test_the_node_timeout_is_a_duration(tmp_path: Path) -> None:
    assert Settings().cluster.node_timeout == 5.0
    assert (
        load_settings(write(tmp_path, "cluster:\n  node_timeout: 10s\n")).cluster.node_timeout == 10
    )
