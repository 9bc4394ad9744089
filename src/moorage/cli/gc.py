"""``moorage gc``: one garbage collection, safe while a server uses the same storage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from moorage.cli.metadata import load_cli_settings
from moorage.config import Settings, parse_duration
from moorage.priority import WriterThread, run_lowered
from moorage.services.gc import BLOBS, LINKS, MANIFESTS, ORPHANS, TAGS, GcReport
from moorage.storage.port import StorageUnavailable
from moorage.units import human_bytes

_LABELS = {
    TAGS: "tags",
    MANIFESTS: "manifests",
    LINKS: "blob links",
    BLOBS: "blobs",
    ORPHANS: "orphaned objects",
}


def _duration(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


class _Progress:
    """One status line on stderr, rewritten in place, when stderr is a terminal (a run over a
    large registry takes a while; cron and scripts get nothing)."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, report: GcReport) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        counts = ", ".join(
            f"{t.count} {_LABELS[kind]}" for kind, t in report.totals.items() if t.count
        )
        click.echo(
            f"\rgc: {counts or 'reviewing'} ({human_bytes(report.bytes_freed)})", nl=False, err=True
        )

    def done(self) -> None:
        if self.enabled and self._last:
            click.echo("\r\x1b[K", nl=False, err=True)


def render(report: GcReport) -> str:
    verb = "would collect" if report.dry_run else "collected"
    lines = []
    if report.dry_run:
        for item in report.items:
            if item.kind == TAGS:  # tag by tag, as retention rules would remove them
                lines.append(f"would remove tag {item.repository}:{item.tag} ({item.digest})")
                continue
            where = f"{item.repository} " if item.repository else ""
            lines.append(
                f"{verb} {_LABELS[item.kind][:-1]} {where}{item.digest} ({human_bytes(item.size)})"
            )
    lines.append(f"{'kind':<18}{'count':>8}{'bytes':>14}")
    for kind, totals in report.totals.items():
        size = "-" if kind in (LINKS, TAGS) else human_bytes(totals.bytes)
        lines.append(f"{_LABELS[kind]:<18}{totals.count:>8}{size:>14}")
    if report.full:
        lines.append(f"upload sessions expired: {report.uploads_expired}")
        lines.append(
            f"unknown objects seen (deleted once older than the grace): {report.orphans_seen}"
        )
    lines.append(
        f"{verb} {human_bytes(report.bytes_freed)} of storage in {report.seconds:.2f} s"
        + ("" if report.full else " (quick run: the store was not listed)")
    )
    return "\n".join(lines)


@click.command("gc")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML config file.")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Where blobs and the database live."
)
@click.option(
    "--grace",
    callback=_duration,
    help="Leave links and objects unused for less than this (e.g. 30m; default gc.grace, 1h).",
)
@click.option(
    "--dry-run/--no-dry-run",
    default=None,
    help="List what would be collected and the bytes it would free; change nothing "
    "(default: gc.dry_run, false).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--quick",
    is_flag=True,
    help="Review the queue only: do not list the store for orphans nor expire uploads.",
)
def gc(
    config_file: Path | None,
    data_dir: Path | None,
    grace: float | None,
    dry_run: bool | None,
    as_json: bool,
    quick: bool,
) -> None:
    """Collect garbage: unreferenced manifests, blob links, blobs and orphaned objects.

    Safe while a server serves the same storage and database."""
    settings = load_cli_settings(config_file, data_dir)
    dry = settings.gc.dry_run if dry_run is None else dry_run
    if settings.gc.priority == "idle":
        # At idle CPU and I/O priority from here on, the registry's construction (its imports,
        # about half a second of CPU) included: it then takes a core only when the server's
        # requests leave one free; its write transactions in a thread made first, at this
        # one's priority. docs/gc.md#costs; priority.py for why threads.
        writer = WriterThread()
        try:
            report = run_lowered(lambda: _run(settings, grace, dry, not quick, writer))
        finally:
            writer.close()
    else:
        report = _run(settings, grace, dry, not quick)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        click.echo(render(report))


def _run(
    settings: Settings,
    grace: float | None,
    dry_run: bool,
    full: bool,
    writer: WriterThread | None = None,
) -> GcReport:
    # The composition root picks the backends; imported here so `moorage --help` stays light.
    from moorage.app import build_registry, start_collection
    from moorage.metadata.migrate import SchemaMismatch
    from moorage.services.gc import CollectorBusy, collect_exclusively
    from moorage.services.jobs import LeaseLost

    progress = _Progress()
    try:
        registry = build_registry(settings)
        # Beating (on a shared database), this run's lease is taken over at once if it is
        # killed, even from another host; a clean exit (an error included) marks it stopped.
        collector, leases, heartbeat = start_collection(settings, registry, writer)
        try:
            return collect_exclusively(
                collector,
                leases,
                settings.gc.grace if grace is None else grace,
                dry_run=dry_run,
                full=full,
                progress=progress,
            )
        finally:
            if heartbeat is not None:
                heartbeat.stop()
    except CollectorBusy as busy:
        raise click.ClickException(
            f"another garbage collection is running ({busy.holder}); try again later"
        ) from None
    except LeaseLost:
        raise click.ClickException(
            "stopped: this collection's lease ran out (was the process suspended?); "
            "what it did is consistent, run it again"
        ) from None
    except StorageUnavailable as error:
        raise click.ClickException(f"storage: {error}") from None
    except SchemaMismatch as error:
        raise click.ClickException(str(error)) from None
    finally:
        progress.done()
