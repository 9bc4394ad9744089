"""`moorage serve` on a host whose libcrypto cannot be used: it stops before listening and says
why, instead of failing every upload later."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from moorage.cli.main import main
from moorage.services import hashing, sha_libcrypto
from tests.support_s3 import free_port


@pytest.fixture
def no_libcrypto(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sha_libcrypto, "_candidates", lambda: ["/nonexistent/libcrypto.so.9"])
    hashing._libcrypto.cache_clear()
    saved = dict(os.environ)  # `serve` hands its flags to its workers through os.environ
    yield
    os.environ.clear()
    os.environ.update(saved)
    hashing._libcrypto.cache_clear()


@pytest.mark.usefixtures("no_libcrypto")
def test_serve_without_libcrypto_stops_plainly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--data-dir", str(tmp_path / "data"), "--port", str(free_port())]
    )
    assert result.exit_code == 1
    last = result.output.splitlines()[-1]
    assert last.startswith("Error: hashing: cannot use OpenSSL's libcrypto"), result.output
    assert "/nonexistent/libcrypto.so.9" in last
    assert "Traceback" not in result.output
