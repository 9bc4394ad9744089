"""``moorage gc``: its configuration errors name the key, its report reads as text and JSON, and
``--dry-run`` lists what retention rules would remove, tag by tag."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from moorage.classic_env import CLASSIC_VARIABLES
from moorage.cli.main import main
from moorage.config import ConfigError, load_settings
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.oci.digest import Digest
from moorage.services.manifests import ManifestService
from moorage.services.uploads import UploadService
from moorage.storage.filesystem import FilesystemBlobStore

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MOORAGE_") or name in CLASSIC_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def gc(*args: str) -> Result:
    return CliRunner().invoke(main, ["gc", *args])


def push(data_dir: Path, repository: str, tag: str, layer: bytes) -> str:
    """An image pushed straight through the services (no server needed)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(f"sqlite:///{data_dir.resolve() / 'moorage.db'}")
    upgrade(engine)
    store = SqlMetadataStore(engine)
    uploads = UploadService(store, FilesystemBlobStore(data_dir), 86400)
    descriptors = []
    for data in (b"{}", layer):
        digest = Digest("sha256", hashlib.sha256(data).hexdigest())
        uploads.put_whole(repository, digest, data)
        descriptors.append({"mediaType": "x/y", "digest": str(digest), "size": len(data)})
    payload = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    ManifestService(store, True).put(repository, tag, payload, OCI_MANIFEST)
    engine.dispose()
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def test_bad_gc_settings_name_their_key(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("gc:\n  grace: soon\n  retention:\n    - repositories: 'ci/*'\n")
    result = gc("--config", str(config))
    assert result.exit_code == 1
    assert "gc.grace: Value error, 'soon' is not a duration" in result.output
    assert "gc.retention.0: Value error, a retention rule needs keep_last or" in result.output


def test_bad_tag_pattern_and_interval_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"gc.retention.0.keep_tags: .*tag pattern 'v/\*'"):
        load_settings(
            gc={"retention": [{"repositories": "*", "keep_last": 1, "keep_tags": ["v/*"]}]}
        )
    with pytest.raises(ConfigError, match=r"gc\.interval: .*at least 1 second"):
        load_settings(gc={"interval": "0.5s"})
    assert load_settings(gc={"grace": "1h30m", "interval": 0}).gc.grace == 5400


def test_a_bad_grace_flag_is_a_usage_error(tmp_path: Path) -> None:
    result = gc("--data-dir", str(tmp_path), "--grace", "a while")
    assert result.exit_code == 2 and "is not a duration" in result.output


def test_dry_run_shows_each_tag_the_rules_would_remove(tmp_path: Path) -> None:
    data = tmp_path / "data"
    push(data, "ci/app", "v1.0", b"release")
    old = push(data, "ci/app", "pr-1", b"layer one")
    push(data, "ci/app", "pr-2", b"layer two")
    push(data, "team/app", "pr-9", b"untouched")
    config = tmp_path / "moorage.yaml"
    config.write_text(
        "gc:\n  retention:\n    - repositories: 'ci/*'\n      keep_last: 1\n"
        "      keep_tags: ['v*']\n"
    )
    result = gc("--config", str(config), "--data-dir", str(data), "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"would remove tag ci/app:pr-1 ({old})" in result.output
    assert "pr-2" not in result.output and "v1.0" not in result.output
    assert "team/app" not in result.output
    assert f"would collect manifest ci/app {old}" in result.output

    report = json.loads(gc("--config", str(config), "--data-dir", str(data), "--json").output)
    assert report["dry_run"] is False
    assert report["totals"]["tag"]["count"] == 1
    assert [i["tag"] for i in report["items"] if i["kind"] == "tag"] == ["pr-1"]
    again = gc("--config", str(config), "--data-dir", str(data), "--dry-run")
    assert "would remove tag" not in again.output


def test_retention_leaves_repositories_with_immutable_tags_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    push(data, "release/app", "v1", b"one")
    push(data, "release/app", "v2", b"two")
    push(data, "scratch/app", "a", b"three")
    push(data, "scratch/app", "b", b"four")
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "rules:\n  - repositories: ['release/*']\n    users: [ci]\n"
        "    actions: [pull, push]\n    immutable_tags: true\n"
    )
    config = tmp_path / "moorage.yaml"
    config.write_text(
        f"auth:\n  policy_file: {policy}\n"
        "gc:\n  retention:\n    - repositories: '*'\n      keep_last: 1\n"
    )
    result = gc("--config", str(config), "--data-dir", str(data), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would remove tag scratch/app:a" in result.output
    assert "release/app" not in result.output


def test_gc_dry_run_in_the_config_can_be_overridden(tmp_path: Path) -> None:
    data = tmp_path / "data"
    push(data, "ci/app", "pr-1", b"one")
    push(data, "ci/app", "pr-2", b"two")
    config = tmp_path / "moorage.yaml"
    config.write_text(
        "gc:\n  dry_run: true\n  retention:\n    - repositories: 'ci/*'\n      keep_last: 1\n"
    )
    dry = json.loads(gc("--config", str(config), "--data-dir", str(data), "--json").output)
    assert dry["dry_run"] is True and dry["totals"]["tag"]["count"] == 1
    real = gc("--config", str(config), "--data-dir", str(data), "--json", "--no-dry-run")
    assert json.loads(real.output)["dry_run"] is False
    after = gc("--config", str(config), "--data-dir", str(data), "--json", "--no-dry-run")
    assert json.loads(after.output)["totals"]["tag"]["count"] == 0


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="Linux scheduling only")
@pytest.mark.parametrize(("variable", "idle"), [(None, True), ("normal", False), ("idle", True)])
def test_gc_collects_at_idle_priority_unless_told_and_leaves_its_caller_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str | None, idle: bool
) -> None:
    import moorage.cli.gc as cli_gc
    from moorage.priority import IOPRIO_IDLE, io_priority

    if variable is not None:
        monkeypatch.setenv("MOORAGE_GC__PRIORITY", variable)
    mine = os.sched_getscheduler(0), io_priority()
    seen = []
    run = cli_gc._run

    def observed(*args: Any) -> Any:
        seen.append((os.sched_getscheduler(0), io_priority()))
        writer = args[4] if len(args) > 4 else None
        if writer is not None:  # where its write transactions run
            writer(lambda: seen.append((os.sched_getscheduler(0), io_priority())))
        return run(*args)

    monkeypatch.setattr(cli_gc, "_run", observed)

    result = gc("--data-dir", str(tmp_path / "data"))

    assert result.exit_code == 0, result.output
    assert "collected 0 B" in result.output
    # Idle: collecting at idle priority, its write transactions at the caller's.
    assert seen == ([(os.SCHED_IDLE, IOPRIO_IDLE), mine] if idle else [mine])
    assert (os.sched_getscheduler(0), io_priority()) == mine


def test_a_bad_priority_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOORAGE_GC__PRIORITY", "low")

    result = gc("--data-dir", str(tmp_path / "data"))

    assert result.exit_code != 0
    assert "gc.priority" in result.output
