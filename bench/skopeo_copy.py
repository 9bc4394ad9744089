#!/usr/bin/env python3
"""`skopeo copy` of a 1 GiB image of 10 layers from an OCI layout into a registry and back out,
wall time, Moorage against distribution 2.8 in alternated rounds.

    .venv/bin/python bench/skopeo_copy.py                  # 1 GiB, 5 rounds, moorage's default
    .venv/bin/python bench/skopeo_copy.py --workers 1      # moorage serve --workers 1
    .venv/bin/python bench/skopeo_copy.py --quick          # 64 MiB, 2 rounds, about 30 s

The layout (10 gzip layers of random bytes, stored uncompressed inside gzip, so that they are
incompressible and valid) is built once and kept under the work dir. In each round, each
registry in turn (the order rotates every round) is started on a fresh data directory, so
that no layer is already there or can be mounted; then:

    skopeo copy --preserve-digests --dest-tls-verify=false oci:LAYOUT:v1 docker://HOST/repo:v1
    skopeo copy --preserve-digests --src-tls-verify=false docker://HOST/repo:v1 oci:FRESH:v1

each timed (wall clock, the whole skopeo process), with an untimed `sync` before each. The
layers are gzip and --preserve-digests forbids any change, so skopeo only moves and hashes
bytes (it compresses nothing: the registry side would want gzip, and has it). The same copy
from one OCI layout to another on the local disk is timed as skopeo's own ceiling, and the
same push into bench/null_registry.py (a registry that discards every body and stores
nothing) as the floor of any registry's push, in the same rounds. See bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import servers
from moorage.cpus import auto_workers
from report import Machine, median_text, print_table, ratio_text, say, spread_text, write_json
from run import default_moorage_bin

MiB = 1 << 20
GiB = 1 << 30
FLOOR = "null registry"
PIECE = 4 * MiB
TAG = "v1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"


# -- the OCI layout ------------------------------------------------------------------------------


class _Hashing(io.RawIOBase):
    """A write-only file that hashes what passes through it on its way to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.out.write(view)
        self.size += len(view)
        return len(view)


class _RandomReader(io.RawIOBase):
    """``size`` random bytes, read in pieces (never all in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        n = min(n, PIECE)
        self.left -= n
        return os.urandom(n)


def _put_blob(blobs: Path, data: bytes) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _write_layer(blobs: Path, index: int, payload: int) -> tuple[dict[str, Any], str]:
    """A gzip layer holding one file of ``payload`` random bytes; (descriptor, diff_id).
    Level 0 gzip (stored blocks): valid, incompressible, and cheap to make."""
    part = blobs / f"layer-{index}.partial"
    with part.open("wb") as f:
        compressed = _Hashing(f)
        with gzip.GzipFile(fileobj=compressed, mode="wb", compresslevel=0, mtime=0) as gz:
            plain = _Hashing(gz)  # type: ignore[arg-type]  # GzipFile is a binary file
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                info = tarfile.TarInfo(f"data/layer-{index:02d}.bin")
                info.size = payload
                tar.addfile(info, _RandomReader(payload))
    digest = compressed.sha.hexdigest()
    part.rename(blobs / digest)
    descriptor = {
        "mediaType": OCI_LAYER_GZIP,
        "digest": f"sha256:{digest}",
        "size": compressed.size,
    }
    return descriptor, f"sha256:{plain.sha.hexdigest()}"


def build_layout(path: Path, size: int, layers: int) -> None:
    """An OCI image layout at ``path`` (tag v1): ``layers`` layers totalling ``size`` bytes of
    random file content, a config with their diff_ids, a manifest and index.json."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    descriptors, diff_ids = [], []
    for i in range(layers):
        descriptor, diff_id = _write_layer(blobs, i, size // layers)
        descriptors.append(descriptor)
        diff_ids.append(diff_id)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {},
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, **_put_blob(blobs, json.dumps(config).encode())},
        "layers": descriptors,
    }
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                **_put_blob(blobs, json.dumps(manifest).encode()),
                "annotations": {"org.opencontainers.image.ref.name": TAG},
            }
        ],
    }
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (path / "index.json").write_text(json.dumps(index))


def cached_layout(work_dir: Path, size_mib: int, layers: int) -> Path:
    """The layout for this size, built on first use and kept (a marker says it is whole)."""
    path = work_dir / f"moorage-skopeo-layout-{size_mib}MiB-{layers}"
    if (path / "complete").exists():
        return path
    shutil.rmtree(path, ignore_errors=True)
    say(f"building the OCI layout {path} ({layers} layers, {size_mib} MiB) ...")
    t0 = time.perf_counter()
    build_layout(path, size_mib * MiB, layers)
    (path / "complete").touch()
    say(f"  built in {time.perf_counter() - t0:.1f} s")
    return path


def layout_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "blobs" / "sha256").iterdir())


# -- the copies ----------------------------------------------------------------------------------


def skopeo(*args: str) -> float:
    """Run `skopeo copy --quiet --preserve-digests ARGS`; its wall time in seconds."""
    argv = ["skopeo", "copy", "--quiet", "--preserve-digests", "--retry-times", "0", *args]
    t0 = time.perf_counter()
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} exited {out.returncode}: {out.stderr.strip()}")
    return seconds


@dataclass
class Figures:
    push_s: list[float] = field(default_factory=list)
    pull_s: list[float] = field(default_factory=list)
    push_cpu_s: list[float] = field(default_factory=list)  # the server's, per push
    pull_cpu_s: list[float] = field(default_factory=list)
    push_ratio: list[float] = field(default_factory=list)  # distribution's s / this one's s
    pull_ratio: list[float] = field(default_factory=list)
    floor_ratio: list[float] = field(default_factory=list)  # the null registry's push s / this


def copy_round(
    server: servers.ManagedServer,
    layout: Path,
    scratch: Path,
    figures: Figures,
    repo: str,
    pull: bool = True,
) -> None:
    """Start ``server`` (fresh data), push the layout with skopeo, pull it back (unless not
    ``pull``); stop it."""
    with server:
        dest = f"docker://127.0.0.1:{server.port}/{repo}:{TAG}"
        probe = server.cpu_probe()
        os.sync()
        c0 = probe()
        figures.push_s.append(skopeo("--dest-tls-verify=false", f"oci:{layout}:{TAG}", dest))
        figures.push_cpu_s.append(probe() - c0)
        if not pull:
            return
        os.sync()
        out = scratch / "pulled"
        c0 = probe()
        figures.pull_s.append(skopeo("--src-tls-verify=false", dest, f"oci:{out}:{TAG}"))
        figures.pull_cpu_s.append(probe() - c0)
    shutil.rmtree(out)


def local_copy(layout: Path, scratch: Path) -> float:
    """skopeo alone: the layout copied to a fresh OCI layout on the same disk."""
    out = scratch / "local-copy"
    os.sync()
    try:
        return skopeo(f"oci:{layout}:{TAG}", f"oci:{out}:{TAG}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def measure(
    args: argparse.Namespace, layout: Path, work: Path
) -> tuple[dict[str, Figures], list[float]]:
    names = ["distribution", "moorage", FLOOR]
    figures = {name: Figures() for name in names}
    local: list[float] = []
    for r in range(args.rounds):
        order = names[r % 3 :] + names[: r % 3]
        for name in order:
            round_dir = work / f"round-{r}-{name}"
            round_dir.mkdir()
            if name == "distribution":
                server = servers.distribution_server(args.distribution_bin, round_dir)
            elif name == FLOOR:
                server = servers.null_registry_server(round_dir)
            else:
                server = servers.moorage_server(args.moorage_bin, round_dir, args.workers)
            repo = f"skopeo/r{r}"
            copy_round(server, layout, round_dir, figures[name], repo, pull=name != FLOOR)
            shutil.rmtree(round_dir)  # its data: the next round starts empty
        local.append(local_copy(layout, work))
        for key in ("push", "pull"):
            dist_s = getattr(figures["distribution"], f"{key}_s")[-1]
            mine_s = getattr(figures["moorage"], f"{key}_s")[-1]
            getattr(figures["moorage"], f"{key}_ratio").append(dist_s / mine_s)
        for f in figures.values():
            f.floor_ratio.append(figures[FLOOR].push_s[-1] / f.push_s[-1])
        say(
            f"  round {r + 1}/{args.rounds}: "
            + "; ".join(
                f"{n} push {figures[n].push_s[-1]:.2f} s, pull {figures[n].pull_s[-1]:.2f} s"
                for n in names
                if n != FLOOR
            )
            + f"; {FLOOR} push {figures[FLOOR].push_s[-1]:.2f} s"
            + f"; skopeo oci->oci {local[-1]:.2f} s"
        )
    return figures, local


# -- report --------------------------------------------------------------------------------------


def print_figures(figures: dict[str, Figures], local: list[float], total: int) -> None:
    mib = total / MiB

    def speeds(seconds: list[float]) -> list[float]:
        return [mib / s for s in seconds]

    headers = ["copy", "registry", "s median", "min-max", "MiB/s", "server CPU s", "vs dist.",
               "vs floor"]  # fmt: skip
    rows = []
    for key in ("push", "pull"):
        for name, f in figures.items():
            seconds = getattr(f, f"{key}_s")
            if not seconds:  # the null registry is only pushed to
                continue
            rows.append(
                [
                    key,
                    name,
                    median_text(seconds, 2),
                    spread_text(seconds, 2),
                    median_text(speeds(seconds)),
                    median_text(getattr(f, f"{key}_cpu_s"), 2),
                    ratio_text(getattr(f, f"{key}_ratio")),
                    ratio_text(f.floor_ratio) if key == "push" else "",
                ]
            )
    rows.append(
        ["oci->oci", "skopeo alone", median_text(local, 2), spread_text(local, 2),
         median_text(speeds(local)), "", "", ""]
    )  # fmt: skip
    print_table(headers, rows, left=2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--size-mib", type=int, default=1024, help="image size (default 1024)")
    ap.add_argument("--layers", type=int, default=10, help="layers (default 10)")
    ap.add_argument("--rounds", type=int, default=5, help="alternated rounds (default 5)")
    ap.add_argument(
        "--workers", type=int, default=None, help="moorage serve --workers (default: its own)"
    )
    ap.add_argument("--quick", action="store_true", help="64 MiB, 2 rounds (smoke)")
    ap.add_argument("--moorage-bin", default=default_moorage_bin())
    ap.add_argument("--distribution-bin", default="/usr/bin/docker-registry")
    ap.add_argument("--json", dest="json_out", type=Path, help="write every figure as JSON")
    ap.add_argument(
        "--work-dir",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where the layout is kept and the registries' data go (default /tmp)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.size_mib, args.rounds = 64, 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for tool in ("skopeo", args.distribution_bin, args.moorage_bin):
        if shutil.which(tool) is None:
            say(f"missing: {tool}")
            return 2
    workers = args.workers if args.workers is not None else auto_workers()
    layout = cached_layout(args.work_dir, args.size_mib, args.layers)
    total = layout_bytes(layout)
    machine = Machine()
    default = " (its default)" if args.workers is None else ""
    machine.print_start(f"  moorage workers: {workers}{default}")
    work = Path(tempfile.mkdtemp(prefix="moorage-skopeo-", dir=args.work_dir))
    try:
        say(f"\n{args.rounds} alternated rounds, {total / MiB:,.0f} MiB in {args.layers} layers:")
        figures, local = measure(args, layout, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    say(f"\n== skopeo copy of {total / MiB:,.0f} MiB in {args.layers} layers; {machine.command}")
    say(f"{machine.finish()}; moorage workers: {workers}{default}\n")
    print_figures(figures, local, total)
    say(
        "\nwall time of the whole skopeo process, median and min-max over the rounds; MiB/s from "
        "the median; vs dist.: distribution's time / Moorage's in the same round (> 1: Moorage "
        "is faster), median (min-max); vs floor: the null registry's push time / this one's "
        "(1.00x: as fast as a registry that stores nothing). Server CPU: all its processes, "
        "from /proc."
    )
    write_json(
        args.json_out,
        {
            "machine": asdict(machine),
            "bytes": total,
            "layers": args.layers,
            "workers": workers,
            "figures": {name: asdict(f) for name, f in figures.items()},
            "skopeo_local_s": local,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
