"""``moorage events list | redeliver`` and ``moorage audit`` on a configured database."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from moorage.cli.main import main
from moorage.cli.metadata import operator
from moorage.metadata.migrate import upgrade
from moorage.metadata.outbox import OutboxWriter, SqlEventStore
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.services.manifests import ManifestService

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("MOORAGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "moorage.yaml"
    settings = {
        "storage": {"data_dir": str(tmp_path / "data")},
        "events": {"endpoints": [{"url": "http://127.0.0.1:9/hook", "name": "hook"}]},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def store(tmp_path: Path) -> SqlMetadataStore:
    """team/app:1 pushed, its event recorded and dispatched to the endpoint "hook"."""
    (tmp_path / "data").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'moorage.db'}")
    upgrade(engine)
    metadata = SqlMetadataStore(engine, outbox=OutboxWriter("/moorage"))
    digest = "sha256:" + hashlib.sha256(b"config").hexdigest()
    metadata.link_blob("team/app", digest, 6)
    config = {"mediaType": "application/octet-stream", "digest": digest, "size": 6}
    payload = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": []}
    ).encode()
    ManifestService(metadata, True).put("team/app", "1", payload, OCI_MANIFEST)
    SqlEventStore(metadata).dispatch(lambda _type, _repository: ["hook"])
    return metadata


def test_events_list_and_redeliver(config: Path, store: SqlMetadataStore) -> None:
    events = SqlEventStore(store)
    [event] = events.list()
    assert run("events", "list", "--failed", "--config", str(config)).output == ""
    events.settle(1, "hook", "answered 500", None)  # gave up

    listed = run("events", "list", "--failed", "--config", str(config))
    assert listed.exit_code == 0, listed.output
    assert event.id in listed.output and "dev.moorage.manifest.pushed" in listed.output
    assert "hook  failed  attempts=1  answered 500" in listed.output
    as_json = json.loads(run("events", "list", "--json", "--config", str(config)).output)
    assert as_json[0]["deliveries"][0]["state"] == "failed"

    again = run("events", "redeliver", "--failed", "--config", str(config))
    assert again.exit_code == 0 and "1 deliveries queued again" in again.output
    assert events.list()[0].deliveries[0].state == "pending"
    assert events.list()[0].deliveries[0].attempts == 0

    events.settle(1, "hook", None, None)  # delivered; sent again on request
    by_id = run("events", "redeliver", event.id, "--config", str(config))
    assert by_id.exit_code == 0 and "1 deliveries" in by_id.output
    unknown = run("events", "redeliver", "no-such-id", "--config", str(config))
    assert unknown.exit_code == 1 and "no deliveries" in unknown.output
    assert run("events", "redeliver", "--config", str(config)).exit_code == 2


def test_cli_changes_write_events_and_audit_entries(config: Path, store: SqlMetadataStore) -> None:
    deleted = run("repo", "delete", "team/app", "--yes", "--config", str(config))
    assert deleted.exit_code == 0, deleted.output
    types = [e.type for e in SqlEventStore(store).list()]
    assert types == ["dev.moorage.repository.deleted", "dev.moorage.manifest.pushed"]

    created = run(
        "token", "create", "--user", "ci", "--scope", "repository:team/*:pull", "--config",
        str(config),
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    token_id = created.stderr.split()[2]
    assert run("token", "revoke", token_id, "--config", str(config)).exit_code == 0

    trail = run("audit", "--json", "--config", str(config))
    assert trail.exit_code == 0, trail.output
    entries = [json.loads(line) for line in trail.output.splitlines()]
    assert [(e["action"], e["user"], e["repository"], e["reference"]) for e in entries] == [
        ("repository.delete", operator(), "team/app", None),
        ("token.create", operator(), None, token_id),
        ("token.revoke", operator(), None, token_id),
    ]
    assert secret not in trail.output

    text = run("audit", "--repo", "team/app", "--since", "1h", "--config", str(config)).output
    assert "repository.delete ok" in text and "token" not in text
    assert run("audit", "--user", "nobody", "--config", str(config)).output == ""
    assert run("audit", "--since", "2000-01-01", "--config", str(config)).output.count("\n") == 3
    assert run("audit", "--since", "soon", "--config", str(config)).exit_code == 2
