"""``moorage usage`` and ``moorage repo delete``: what repositories hold, and removing one.

Both work on the database of the configuration given (the same one a running server uses), so
they can run while it serves: the report is one consistent snapshot, and a delete is one
transaction queued behind the server's writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from moorage.audit.entry import REPOSITORY_DELETE
from moorage.cli.metadata import _config_option, audit_cli, open_metadata
from moorage.metadata.usage import UsageReport
from moorage.metadata.usage_sql import SqlUsageStore
from moorage.services.repositories import RepositoryService
from moorage.services.usage import UsageService
from moorage.units import human_bytes

_F = TypeVar("_F", bound=Callable[..., Any])


def _store_options(command: _F) -> _F:
    """``--config`` as the token commands take it, and ``--data-dir`` as `serve` does."""
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        help="The data directory (its SQLite database), as given to `moorage serve`.",
    )(command)
    return _config_option(command)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned first column, right-aligned numbers."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in [header, *rows]
    ]


def render_text(report: UsageReport) -> str:
    lines = _table(
        ["REPOSITORY", "TAGS", "MANIFESTS", "BLOBS", "BYTES", "UNREFERENCED"],
        [
            [
                u.name,
                str(u.tags),
                str(u.manifests),
                str(u.blobs),
                human_bytes(u.bytes),
                human_bytes(u.unreferenced_bytes),
            ]
            for u in report.repositories
        ],
    )
    lines.append("")
    lines += _table(
        ["NAMESPACE", "REPOSITORIES", "BLOBS", "BYTES"],
        [
            [n.name or "(top level)", str(n.repositories), str(n.blobs), human_bytes(n.bytes)]
            for n in report.namespaces
        ],
    )
    lines += [
        "",
        f"distinct: {human_bytes(report.distinct_bytes)}: these repositories' "
        f"{report.distinct_blobs} blobs, each counted once, and their manifests",
        f"stored:   {human_bytes(report.stored_bytes)} in {report.stored_blobs} blobs, the "
        "whole registry's, also those awaiting the garbage collector",
        "",
        "BYTES (what quotas limit): the blobs the repository's manifests reference, each once,",
        "plus the manifests. A blob shared by several repositories counts in full in each of",
        "them, and once per namespace. UNREFERENCED: blobs uploaded to the repository that",
        "none of its manifests uses (a push in progress, refused or abandoned); not in BYTES.",
    ]
    return "\n".join(lines)


def render_json(report: UsageReport) -> dict[str, Any]:
    return {
        "repositories": [
            {
                "name": u.name,
                "namespace": u.namespace,
                "tags": u.tags,
                "manifests": u.manifests,
                "manifest_bytes": u.manifest_bytes,
                "blobs": u.blobs,
                "blob_bytes": u.blob_bytes,
                "bytes": u.bytes,
                "unreferenced_blobs": u.unreferenced_blobs,
                "unreferenced_bytes": u.unreferenced_bytes,
            }
            for u in report.repositories
        ],
        "namespaces": [
            {
                "name": n.name,
                "repositories": n.repositories,
                "manifest_bytes": n.manifest_bytes,
                "blobs": n.blobs,
                "blob_bytes": n.blob_bytes,
                "bytes": n.bytes,
            }
            for n in report.namespaces
        ],
        "distinct_blobs": report.distinct_blobs,
        "distinct_bytes": report.distinct_bytes,
        "stored_blobs": report.stored_blobs,
        "stored_bytes": report.stored_bytes,
    }


@click.command("usage")
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@_store_options
def usage(
    pattern: str | None, as_json: bool, config_file: Path | None, data_dir: Path | None
) -> None:
    """Stored bytes per repository and namespace (repositories matching the glob PATTERN,
    e.g. 'team/*'; all by default). See docs/gc.md for how shared blobs are counted."""
    from moorage.auth.policy import validate_repository_pattern

    if pattern is not None:
        try:
            validate_repository_pattern(pattern)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="PATTERN") from None
    with open_metadata(config_file, data_dir) as (_, metadata):
        report = UsageService(SqlUsageStore(metadata)).report(pattern)
    if as_json:
        click.echo(json.dumps(render_json(report), indent=2))
    else:
        click.echo(render_text(report))


@click.group("repo")
def repo() -> None:
    """Repositories as a whole."""


@repo.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_store_options
def repo_delete(name: str, yes: bool, config_file: Path | None, data_dir: Path | None) -> None:
    """Delete repository NAME: its tags, manifests and blob links, in one transaction. The
    blob bytes nothing else uses are reclaimed by the garbage collector later."""
    from moorage.errors import RegistryError
    from moorage.oci.names import is_valid_name

    if not is_valid_name(name):
        raise click.BadParameter(f"{name!r} is not a repository name", param_hint="NAME")
    with open_metadata(config_file, data_dir) as (settings, metadata):
        store = SqlUsageStore(metadata)
        if not yes:
            click.confirm(f"Delete repository {name} with all its tags and manifests?", abort=True)
        try:
            deleted = RepositoryService(store).delete(name)
        except RegistryError:
            raise click.ClickException(f"no repository named {name}") from None
        audit_cli(metadata, settings, REPOSITORY_DELETE, repository=name)
    click.echo(
        f"deleted {deleted.name}: {deleted.tags} tags, {deleted.manifests} manifests, "
        f"{deleted.linked_blobs} blob links (run the garbage collector to reclaim the bytes)"
    )
