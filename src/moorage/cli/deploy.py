"""``moorage deploy``: render deployment recipes (docs/deploy/) from a few flags."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

import click

from moorage.deploy.cloud_init import CloudInitOptions, DeployOptionError, render_cloud_init


def _default_package() -> str:
    """The instance runs the version that rendered its configuration, so the two agree."""
    try:
        return f"moorage=={version('moorage')}"
    except PackageNotFoundError:
        return "moorage"


@click.group("deploy")
def deploy() -> None:
    """Render deployment recipes (see docs/deploy/)."""


@deploy.command("cloud-init")
@click.option("--bucket", required=True, help="S3 bucket for the blobs (storage.s3.bucket).")
@click.option("--prefix", default="", help="Key prefix in the bucket (storage.s3.prefix).")
@click.option("--region", help="The bucket's region (default: the instance's own region).")
@click.option(
    "--redirect/--no-redirect",
    default=True,
    show_default=True,
    help="Send blob GETs to pre-signed S3 URLs, so layer bytes bypass the instance.",
)
@click.option("--port", type=int, default=5000, show_default=True, help="Port to listen on.")
@click.option("--tls-cert-path", help="PEM certificate chain on the instance (built-in TLS).")
@click.option("--tls-key-path", help="Its PEM key on the instance.")
@click.option(
    "--behind-load-balancer",
    is_flag=True,
    help="TLS ends at a load balancer that forwards plain HTTP to the instance.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    help="CIDR of the load balancer (repeatable), whose X-Forwarded-* headers are believed.",
)
@click.option(
    "--htpasswd-user",
    "htpasswd_users",
    multiple=True,
    help="Create this user (repeatable); passwords are generated on the instance.",
)
@click.option(
    "--allow-anonymous-network",
    is_flag=True,
    help="Serve without authentication (anyone who reaches the port may push and delete).",
)
@click.option(
    "--database-url",
    help="A cluster node: the shared PostgreSQL, postgresql://USER@HOST:5432/DB (no password; "
    "put it in a pgpass file under --shared-config). See docs/deploy/cluster.md.",
)
@click.option(
    "--public-url",
    help="A cluster node: the load balancer's address, https://registry.example.com (the "
    "issuer of the tokens every node accepts).",
)
@click.option(
    "--shared-config",
    help="A cluster node: s3://BUCKET/PREFIX/ holding token-key.pem, token-cert.pem, htpasswd, "
    "policy.yaml and optionally pgpass, copied to /etc/moorage at boot.",
)
@click.option(
    "--package",
    help="pip requirement to install: a version, a wheel URL or git+https://...@tag "
    "(default: this version of moorage).",
)
def cloud_init(
    bucket: str,
    prefix: str,
    region: str | None,
    redirect: bool,
    port: int,
    tls_cert_path: str | None,
    tls_key_path: str | None,
    behind_load_balancer: bool,
    trusted_proxies: tuple[str, ...],
    htpasswd_users: tuple[str, ...],
    allow_anonymous_network: bool,
    database_url: str | None,
    public_url: str | None,
    shared_config: str | None,
    package: str | None,
) -> None:
    """Print EC2 user-data (#cloud-config) that installs Moorage with S3 storage.

    The instance reaches the bucket through its instance role: no keys are written.
    """
    options = CloudInitOptions(
        bucket=bucket,
        package=package or _default_package(),
        prefix=prefix,
        region=region,
        redirect=redirect,
        port=port,
        tls_cert_path=tls_cert_path,
        tls_key_path=tls_key_path,
        behind_load_balancer=behind_load_balancer,
        trusted_proxies=trusted_proxies,
        htpasswd_users=htpasswd_users,
        allow_anonymous_network=allow_anonymous_network,
        database_url=database_url,
        public_url=public_url,
        shared_config=shared_config,
    )
    try:
        click.echo(render_cloud_init(options), nl=False)
    except DeployOptionError as error:
        raise click.ClickException(str(error)) from None
