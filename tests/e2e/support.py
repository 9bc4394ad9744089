"""Helpers for the e2e tests: the registry process, the client tools, and OCI image layouts.

Nothing here talks to the network beyond loopback: images are built locally, byte for byte,
so that every digest the tests compare is known in advance.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib
import io
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import IO, Any, NoReturn

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

#: ``E2E_REGISTRY_CMD=distribution`` runs the suite against Debian's ``docker-registry``
#: (CNCF Distribution 2.8) instead of Moorage, to check the tests themselves.
REGISTRY_CMD_VARIABLE = "E2E_REGISTRY_CMD"
REGISTRY_KINDS = ("moorage", "distribution")
STARTUP_TIMEOUT = float(os.environ.get("E2E_STARTUP_TIMEOUT", "30"))
STOP_TIMEOUT = 15.0
COMMAND_TIMEOUT = 120.0

INSTALL_HINTS: dict[str, str] = {
    "skopeo": "apt-get install skopeo",
    "podman": "apt-get install podman",
    "buildah": "apt-get install buildah",
    "umoci": "apt-get install umoci",
    "docker-registry": "apt-get install docker-registry",
    "prometheus": "apt-get install prometheus (./scripts/test installs it)",
    "moorage": "python3 -m venv .venv && .venv/bin/pip install -e '.[test]'",
    "oras": ".venv/bin/pip install -e '.[test]' (or .venv/bin/pip install oras)",
}

MT_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MT_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_OCI_EMPTY = "application/vnd.oci.empty.v1+json"
MT_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MT_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MT_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MT_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

MANIFEST_ACCEPT = ", ".join((MT_OCI_MANIFEST, MT_OCI_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST))
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
EMPTY_JSON = b"{}"


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Finding tools; a missing one fails the test with the command that installs it.
# --------------------------------------------------------------------------------------------


def fail_missing(name: str, detail: str = "") -> NoReturn:
    hint = INSTALL_HINTS.get(name, f"apt-get install {name}")
    extra = f" ({detail})" if detail else ""
    pytest.fail(
        f"`{name}` is needed by this test but is not installed{extra}; install it with: {hint}",
        pytrace=False,
    )


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None and os.access(f"/usr/bin/{name}", os.X_OK):
        found = f"/usr/bin/{name}"
    if found is None:
        fail_missing(name)
    return found


def moorage_executable() -> str:
    candidates = [Path(sys.executable).parent / "moorage", REPO_ROOT / ".venv" / "bin" / "moorage"]
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("moorage")
    if found is None:
        fail_missing("moorage", "no `moorage` console script next to this Python nor in .venv/bin")
    return found


def import_oras(module: str = "oras.client") -> ModuleType:
    """A module of the oras SDK (untyped), or a failed test naming how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        fail_missing("oras", f"import {module} failed: {error}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------------------------
# The registry process.
# --------------------------------------------------------------------------------------------


def registry_kind() -> str:
    kind = os.environ.get(REGISTRY_CMD_VARIABLE, "").strip() or "moorage"
    if kind not in REGISTRY_KINDS:
        pytest.fail(
            f"{REGISTRY_CMD_VARIABLE}={kind!r} is not understood; use one of {REGISTRY_KINDS}",
            pytrace=False,
        )
    return kind


class RegistryServer:
    """A registry process on a loopback port, serving from ``data_dir``.

    ``restart()`` stops it (gracefully, or with SIGKILL to simulate a crash) and starts it again
    on the same port and the same data directory, so ``host`` and ``url`` stay valid.
    """

    #: A TLS-serving subclass (tests/e2e/tls.py) sets ``https`` and the CA its clients trust.
    scheme = "http"
    verify: ssl.SSLContext | bool = True

    def __init__(
        self,
        kind: str,
        workdir: Path,
        data_dir: Path | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.kind = kind
        self.extra_args = list(extra_args)
        # Extra environment variables for the server process (e.g. the classic S3 variables).
        self.env = dict(env or {})
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir if data_dir is not None else workdir / "data"
        self.port = free_port()
        self.log_path = workdir / "registry.log"
        self.starts = 0
        self.last_exit_code: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def __repr__(self) -> str:
        return f"RegistryServer(kind={self.kind!r}, url={self.url!r}, data_dir={self.data_dir})"

    def command(self) -> list[str]:
        if self.kind == "distribution":
            return [require_tool("docker-registry"), "serve", str(self._distribution_config())]
        return [
            moorage_executable(),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]

    def _distribution_config(self) -> Path:
        # JSON is YAML, so no YAML writer is needed.
        config = {
            "version": 0.1,
            "log": {"level": "warn", "formatter": "text"},
            "storage": {
                "filesystem": {"rootdirectory": str(self.data_dir)},
                "delete": {"enabled": True},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": self.host, "secret": "moorage-e2e-not-a-secret"},
        }
        path = self.workdir / "distribution-config.yml"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self) -> None:
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = self.command()
        self.starts += 1
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== e2e start #{self.starts}: {shlex.join(argv)}\n".encode())
        self._log.flush()
        # A session of its own, so that stop() reaches any worker processes too.
        self._proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                self._close_log()
                pytest.fail(
                    f"{self.kind} registry exited with code {code} before answering GET /v2/\n"
                    f"command: {shlex.join(self.command())}\n{self.log_tail()}",
                    pytrace=False,
                )
            try:
                response = httpx.get(f"{self.url}/v2/", timeout=2.0, verify=self.verify)
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}: {error}"
            else:
                if response.status_code in (200, 401):
                    return
                last = f"HTTP {response.status_code}: {response.text[:300]!r}"
            time.sleep(0.1)
        self.stop(kill=True)
        pytest.fail(
            f"{self.kind} registry did not answer GET {self.url}/v2/ with 200 within "
            f"{STARTUP_TIMEOUT:.0f}s; last: {last}\n{self.log_tail()}",
            pytrace=False,
        )

    def stop(self, *, kill: bool = False) -> None:
        """Stop the process group: SIGTERM (then SIGKILL after a grace period), or SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal_group(proc, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        # Reap stragglers of the same session (e.g. worker processes) left by a graceful stop.
        self._signal_group(proc, signal.SIGKILL)
        self.last_exit_code = proc.returncode
        self._proc = None
        self._close_log()

    def __enter__(self) -> RegistryServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (``kill=True``: SIGKILL, like a crash) and start again on the same data dir."""
        self.stop(kill=kill)
        self.start()

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no registry log at {self.log_path})"
        tail = "\n".join(line[:400] for line in text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, verify=self.verify)


# --------------------------------------------------------------------------------------------
# Running client tools.
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def podman_tool(
    registry: RegistryServer, root: Path, env: Mapping[str, str] | None = None
) -> Iterator[Tool]:
    """Podman (running as root) with throw-away storage under ``root``, aimed at ``registry``."""
    # Podman refuses a runroot path longer than 50 characters, so not under root.
    with tempfile.TemporaryDirectory(prefix="e2e-podman-", dir="/tmp") as runroot:
        yield Tool(
            "podman",
            global_args=(
                "--root",
                str(root / "podman-root"),
                "--runroot",
                runroot,
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ),
            registry=registry,
            env=env,
        )


def describe_run(result: subprocess.CompletedProcess[str], limit: int = 4000) -> str:
    argv = result.args if isinstance(result.args, list) else [str(result.args)]
    return (
        f"$ {shlex.join(str(a) for a in argv)}\nexit code {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-limit:]}\n--- stderr ---\n{result.stderr[-limit:]}"
    )


@dataclass
class Tool:
    """A command-line client; looked up when first run, so a missing one fails that test."""

    name: str
    global_args: Sequence[str] = ()
    registry: RegistryServer | None = None
    timeout: float = COMMAND_TIMEOUT
    env: Mapping[str, str] | None = None
    _path: str | None = field(default=None, init=False, repr=False)

    def __call__(
        self, *args: str | os.PathLike[str], check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        if self._path is None:
            self._path = require_tool(self.name)
        argv = [self._path, *self.global_args, *(os.fspath(a) for a in args)]
        env = None if self.env is None else {**os.environ, **self.env}
        limit = timeout if timeout is not None else self.timeout
        try:
            result = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=limit,
                stdin=subprocess.DEVNULL,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(
                f"timed out after {limit:.0f}s: $ {shlex.join(argv)}\n"
                f"--- stdout ---\n{_text(error.stdout)}\n--- stderr ---\n{_text(error.stderr)}"
                f"{self._registry_log()}",
                pytrace=False,
            )
        if check and result.returncode != 0:
            pytest.fail(f"{describe_run(result)}{self._registry_log()}", pytrace=False)
        return result

    def json(self, *args: str | os.PathLike[str]) -> Any:
        result = self(*args)
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"output is not JSON:\n{describe_run(result)}", pytrace=False)

    def _registry_log(self) -> str:
        return f"\n{self.registry.log_tail()}" if self.registry is not None else ""


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


# --------------------------------------------------------------------------------------------
# OCI image layouts, written by hand so that every byte (and so every digest) is known.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] | None = None
    platform: Mapping[str, str] | None = None
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type is not None:
            out["artifactType"] = self.artifact_type
        if self.platform is not None:
            out["platform"] = dict(self.platform)
        if self.annotations is not None:
            out["annotations"] = dict(self.annotations)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        return cls(
            media_type=data["mediaType"],
            digest=data["digest"],
            size=data["size"],
            annotations=data.get("annotations"),
            platform=data.get("platform"),
            artifact_type=data.get("artifactType"),
        )

    def plain(self) -> Descriptor:
        """The same descriptor without annotations and platform."""
        return Descriptor(self.media_type, self.digest, self.size)


@dataclass(frozen=True)
class BuiltImage:
    manifest: Descriptor
    config: Descriptor
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    manifest_bytes: bytes
    architecture: str
    os: str

    @property
    def blob_digests(self) -> set[str]:
        return {self.config.digest, *(layer.digest for layer in self.layers)}


FIXED_MTIME = 1_700_000_000
FIXED_CREATED = "2023-11-14T22:13:20Z"


def make_layer_tar(files: Mapping[str, bytes]) -> bytes:
    """An uncompressed, reproducible tar of ``files`` (path -> content), with parent dirs."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in directories:
                    directories.add(directory)
                    info = tarfile.TarInfo(directory + "/")
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    info.mtime = FIXED_MTIME
                    tar.addfile(info)
            content = files[path]
            info = tarfile.TarInfo("/".join(parts))
            info.size = len(content)
            info.mode = 0o644
            info.mtime = FIXED_MTIME
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class OciLayout:
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not (path / "oci-layout").exists():
            (path / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (path / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
            self._write_index({"schemaVersion": 2, "manifests": []})

    def reference(self, tag: str) -> str:
        """The containers/image transport reference, e.g. for skopeo or podman."""
        return f"oci:{self.path}:{tag}"

    def index(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "index.json").read_text())
        return data

    def _write_index(self, index: Mapping[str, Any]) -> None:
        (self.path / "index.json").write_text(json.dumps(index, indent=2))

    def blob_path(self, digest: str) -> Path:
        algorithm, _, encoded = digest.partition(":")
        return self.path / "blobs" / algorithm / encoded

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        digest = sha256_digest(data)
        self.blob_path(digest).write_bytes(data)
        return Descriptor(media_type, digest, len(data))

    def read_blob(self, digest: str) -> bytes:
        return self.blob_path(digest).read_bytes()

    def read_json(self, digest: str) -> Any:
        return json.loads(self.read_blob(digest))

    def add_image(
        self,
        files: Mapping[str, bytes],
        *,
        base_files: Mapping[str, bytes] | None = None,
        architecture: str = "amd64",
        os_name: str = "linux",
        cmd: Sequence[str] = ("/bin/true",),
        labels: Mapping[str, str] | None = None,
        compresslevel: int = 6,
    ) -> BuiltImage:
        """A gzip layer holding ``files`` (on top of one holding ``base_files``, if given),
        a config and an OCI manifest; returns their descriptors."""
        layers: list[Descriptor] = []
        diff_ids: list[str] = []
        for layer_files in ([base_files] if base_files is not None else []) + [files]:
            tar = make_layer_tar(layer_files)
            compressed = gzip.compress(tar, compresslevel=compresslevel, mtime=0)
            layers.append(self.add_blob(compressed, MT_OCI_LAYER_GZIP))
            diff_ids.append(sha256_digest(tar))
        config_json: dict[str, Any] = {
            "created": FIXED_CREATED,
            "architecture": architecture,
            "os": os_name,
            "config": {"Cmd": list(cmd), "Labels": dict(labels or {})},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [
                {"created": FIXED_CREATED, "created_by": "moorage e2e layout builder"}
                for _ in layers
            ],
        }
        config = self.add_blob(canonical_json(config_json), MT_OCI_CONFIG)
        manifest_json = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_MANIFEST,
            "config": config.to_json(),
            "layers": [layer.to_json() for layer in layers],
        }
        manifest_bytes = canonical_json(manifest_json)
        manifest = self.add_blob(manifest_bytes, MT_OCI_MANIFEST)
        return BuiltImage(
            manifest=manifest,
            config=config,
            layers=tuple(layers),
            diff_ids=tuple(diff_ids),
            manifest_bytes=manifest_bytes,
            architecture=architecture,
            os=os_name,
        )

    def add_index(self, images: Sequence[BuiltImage]) -> tuple[Descriptor, bytes]:
        """An image index of ``images``, each with its platform."""
        index_json = {
            "schemaVersion": 2,
            "mediaType": MT_OCI_INDEX,
            "manifests": [
                Descriptor(
                    MT_OCI_MANIFEST,
                    image.manifest.digest,
                    image.manifest.size,
                    platform={"architecture": image.architecture, "os": image.os},
                ).to_json()
                for image in images
            ],
        }
        index_bytes = canonical_json(index_json)
        return self.add_blob(index_bytes, MT_OCI_INDEX), index_bytes

    def tag(self, descriptor: Descriptor, name: str) -> None:
        index = self.index()
        index["manifests"] = [
            entry
            for entry in index["manifests"]
            if (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) != name
        ]
        entry = descriptor.plain().to_json()
        entry["annotations"] = {REF_NAME_ANNOTATION: name}
        index["manifests"].append(entry)
        self._write_index(index)

    def resolve(self, name: str) -> Descriptor:
        for entry in self.index()["manifests"]:
            if (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION) == name:
                return Descriptor.from_json(entry)
        raise KeyError(f"no {name!r} in {self.path}/index.json: {self.index()}")

    def corrupt_blobs(self) -> list[str]:
        """Names of blobs whose content does not hash to their name (should be empty)."""
        bad = []
        for blob in sorted((self.path / "blobs" / "sha256").iterdir()):
            if sha256_digest(blob.read_bytes()) != f"sha256:{blob.name}":
                bad.append(blob.name)
        return bad

    def image_blobs(self, manifest_digest: str) -> set[str]:
        """Digests of the config and layers of the manifest stored here (must all exist)."""
        manifest = self.read_json(manifest_digest)
        digests = {manifest["config"]["digest"], *(d["digest"] for d in manifest["layers"])}
        for digest in digests:
            assert self.blob_path(digest).is_file(), f"{digest} missing from {self.path}"
        return digests


def image_files(label: str) -> dict[str, bytes]:
    """A couple of small files, unique to ``label`` so that tests do not share blobs."""
    return {
        "etc/moorage-e2e-release": f"moorage e2e image {label}\n".encode(),
        "app/hello.txt": f"hello from {label}\n".encode(),
        "app/data.bin": hashlib.sha256(label.encode()).digest() * 64,
    }


def new_image_layout(path: Path, label: str, tag: str = "v1", **kwargs: Any) -> BuiltImage:
    layout = OciLayout(path)
    image = layout.add_image(image_files(label), **kwargs)
    layout.tag(image.manifest, tag)
    return image


def get_manifest(
    client: httpx.Client, repository: str, reference: str, accept: str = MANIFEST_ACCEPT
) -> httpx.Response:
    return client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": accept})


def describe_response(response: httpx.Response, limit: int = 2000) -> str:
    request = response.request
    headers = "\n".join(f"  {k}: {v}" for k, v in response.headers.items())
    return (
        f"{request.method} {request.url} -> HTTP {response.status_code}\n{headers}\n"
        f"  body: {response.text[:limit]!r}"
    )


def media_type(response: httpx.Response) -> str:
    content_type: str = response.headers.get("content-type", "")
    return content_type.split(";")[0].strip()


def push_layout(
    skopeo: Tool, layout: OciLayout, tag: str, dest: str, workdir: Path, *extra: str
) -> str:
    """``skopeo copy`` a layout's ``tag`` to ``dest``; returns the digest skopeo reports."""
    digestfile = workdir / f"pushed-{uuid.uuid4().hex}.digest"
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        "--digestfile",
        digestfile,
        *extra,
        layout.reference(tag),
        dest,
    )
    return digestfile.read_text().strip()
