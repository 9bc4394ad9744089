"""``moorage storage check``: can the configured blob store be written, read and deleted?"""

from __future__ import annotations

from pathlib import Path

import click

from moorage.cli.metadata import load_cli_settings
from moorage.config import Settings
from moorage.storage.port import StorageUnavailable


def describe_location(settings: Settings) -> str:
    """Where the configured store keeps blobs, as an operator would write it."""
    storage = settings.storage
    if storage.backend == "s3":
        prefix = f"/{storage.s3.prefix}" if storage.s3.prefix else ""
        return f"s3://{storage.s3.bucket}{prefix}"
    return str(storage.data_dir.resolve())


@click.group("storage")
def storage() -> None:
    """The blob store (filesystem or S3)."""


@storage.command("check")
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML config file.")
def check(config_file: Path | None) -> None:
    """Write, read back and delete a probe object in the configured store."""
    settings = load_cli_settings(config_file)
    # The composition root picks the backend; imported here so `moorage --help` stays light.
    from moorage.app import build_blob_store

    location = describe_location(settings)
    try:
        build_blob_store(settings).probe()
    except StorageUnavailable as error:
        raise click.ClickException(f"storage check failed for {location}: {error}") from None
    except OSError as error:  # the filesystem store cannot even create its directories
        reason = f"{error.filename}: {error.strerror}" if error.filename else str(error)
        raise click.ClickException(f"storage check failed for {location}: {reason}") from None
    click.echo(f"ok: wrote, read and deleted a probe object in {location}")
