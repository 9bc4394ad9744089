"""``moorage usage`` and ``moorage repo delete`` on a data directory's database."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from moorage.cli.main import main
from moorage.metadata.migrate import upgrade
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.manifests import ManifestService

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MOORAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """team/app and team/api share a 1000-byte layer; solo has its own."""
    data = tmp_path / "data"
    data.mkdir()
    engine = make_engine(f"sqlite:///{data / 'moorage.db'}")
    upgrade(engine)
    store = SqlMetadataStore(engine)

    def push(repository: str, tag: str, blobs: dict[str, int]) -> None:
        digests = []
        for name, size in blobs.items():
            digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
            store.link_blob(repository, digest, size)
            digests.append(
                {"mediaType": "application/octet-stream", "digest": digest, "size": size}
            )
        payload = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": digests[0],
                "layers": digests[1:],
            }
        ).encode()
        ManifestService(store, True).put(repository, tag, payload, OCI_MANIFEST)

    push("team/app", "1", {"config-a": 10, "shared": 1000})
    push("team/api", "1", {"config-b": 20, "shared": 1000})
    push("solo", "1", {"config-s": 30})
    engine.dispose()
    return data


def test_usage_json(data_dir: Path) -> None:
    result = run("usage", "--json", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    repositories = {r["name"]: r for r in report["repositories"]}
    assert list(repositories) == ["solo", "team/api", "team/app"]
    assert repositories["team/app"]["blob_bytes"] == 1010
    assert repositories["team/api"]["blob_bytes"] == 1020
    assert repositories["team/app"]["namespace"] == "team"
    namespaces = {n["name"]: n for n in report["namespaces"]}
    assert namespaces["team"]["blob_bytes"] == 1030  # the shared layer once
    assert namespaces[""]["blob_bytes"] == 30
    assert report["distinct_blobs"] == 4 and report["stored_bytes"] == 1060


def test_usage_text_and_pattern(data_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text(f"storage:\n  data_dir: {data_dir}\n")
    result = run("usage", "team/*", "--config", str(config))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAGS", "MANIFESTS", "BLOBS", "BYTES", "UNREFERENCED"]
    assert [line.split()[0] for line in lines[1:3]] == ["team/api", "team/app"]
    assert "solo" not in result.output
    assert "counts in full in each of\nthem, and once per namespace" in result.output
    bad = run("usage", "Team/*", "--data-dir", str(data_dir))
    assert bad.exit_code == 2 and "PATTERN" in bad.output


def test_repo_delete(data_dir: Path) -> None:
    declined = run("repo", "delete", "team/app", "--data-dir", str(data_dir), input="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    result = run("repo", "delete", "team/app", "--yes", "--data-dir", str(data_dir))
    assert result.exit_code == 0, result.output
    assert result.output == (
        "deleted team/app: 1 tags, 1 manifests, 2 blob links "
        "(run the garbage collector to reclaim the bytes)\n"
    )
    report = json.loads(run("usage", "--json", "--data-dir", str(data_dir)).output)
    assert [r["name"] for r in report["repositories"]] == ["solo", "team/api"]
    again = run("repo", "delete", "team/app", "--yes", "--data-dir", str(data_dir))
    assert again.exit_code == 1 and "no repository named team/app" in again.output
    invalid = run("repo", "delete", "Not Valid", "--yes", "--data-dir", str(data_dir))
    assert invalid.exit_code == 2


def test_a_database_error_is_one_sentence(tmp_path: Path) -> None:
    config = tmp_path / "moorage.yaml"
    config.write_text("database:\n  url: postgresql+psycopg://nobody@127.0.0.1:1/none\n")
    result = run("usage", "--config", str(config))
    assert result.exit_code == 1
    assert result.output.startswith("Error: database postgresql+psycopg://nobody@127.0.0.1:1/none")
    assert "Traceback" not in result.output
