"""`moorage serve` prepares the metrics directory before prometheus-client is imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moorage.telemetry.multiprocess_dir import MULTIPROCESS_VARIABLE, prepare_multiprocess_dir


def test_the_cli_does_not_import_prometheus_client_before_serve_sets_the_directory() -> None:
    # prometheus-client picks its value class once, at import: imported earlier, the workers
    # would keep their figures to themselves.
    code = "import sys, moorage.cli.main; print('prometheus_client' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != MULTIPROCESS_VARIABLE}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert result.stdout.strip() == "False"


def test_a_fresh_directory_is_made_and_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    # setenv first, so that the variable the function sets is undone after the test.
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, "")
    monkeypatch.delenv(MULTIPROCESS_VARIABLE)
    remove = prepare_multiprocess_dir()
    directory = Path(os.environ[MULTIPROCESS_VARIABLE])
    assert directory.is_dir() and not any(directory.iterdir())
    remove()
    assert not directory.exists()


def test_an_operators_directory_is_emptied_and_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "counter_42.db").write_bytes(b"stale")
    (tmp_path / "notes.txt").write_text("not ours")
    monkeypatch.setenv(MULTIPROCESS_VARIABLE, str(tmp_path))
    prepare_multiprocess_dir()()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
