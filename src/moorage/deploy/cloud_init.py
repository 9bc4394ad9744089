"""The EC2 cloud-init user-data that installs Moorage with S3 storage.

:func:`render_cloud_init` fills ``templates/user-data.yaml`` with three embedded files: the
Moorage configuration (dumped from a dict, so it is valid YAML whatever the values), the systemd
unit, and the install script, whose parameters are shell-quoted. It holds no secret: the bucket
is reached through the EC2 instance role, and htpasswd passwords are generated on the instance.

A cluster node (``--database-url``, docs/deploy/cluster.md) holds no secret either: what every
node must share (the token signing key and certificate, the htpasswd file, the policy, and a
PostgreSQL password file) is copied at boot from ``--shared-config``, an S3 prefix the instance
role may read, and the database URL must carry no password.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import urlsplit

import yaml

from moorage.api.forwarded import parse_trusted
from moorage.auth.usernames import validate_username

# Where the installer puts things on the instance (the unit names the same paths).
CONFIG_PATH = "/etc/moorage/moorage.yaml"
HTPASSWD_PATH = "/etc/moorage/htpasswd"
DATA_DIR = "/var/lib/moorage"
# A cluster node's shared files, copied from --shared-config into /etc/moorage at boot.
SHARED_DIR = "/etc/moorage"
TOKEN_KEY_PATH = f"{SHARED_DIR}/token-key.pem"
TOKEN_CERT_PATH = f"{SHARED_DIR}/token-cert.pem"
POLICY_PATH = f"{SHARED_DIR}/policy.yaml"
# Required, then optional (libpq reads a password from PGPASSFILE; without one, the database
# must let the node in some other way, e.g. a client certificate or trust from its subnet).
SHARED_FILES = ("token-key.pem", "token-cert.pem", "htpasswd", "policy.yaml")
OPTIONAL_SHARED_FILES = ("pgpass",)

# Bucket names as S3 allows them (3-63 lower-case letters, digits, dots, hyphens).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z]{2}(-[a-z0-9]+)+")
# The embedded files are indented under `content: |` in the template.
_INDENT = " " * 6
_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


class DeployOptionError(ValueError):
    """The options cannot make a working deployment; the message names the option."""


@dataclass(frozen=True)
class CloudInitOptions:
    """What ``moorage deploy cloud-init`` is told. Exactly one of built-in TLS (both paths)
    or a load balancer (with the proxies to trust) must be chosen."""

    bucket: str
    # pip requirement: a version (`moorage==0.1.0`), a wheel URL, or `git+https://...@tag`.
    package: str
    prefix: str = ""
    region: str | None = None
    redirect: bool = True
    port: int = 5000
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    behind_load_balancer: bool = False
    trusted_proxies: tuple[str, ...] = ()
    htpasswd_users: tuple[str, ...] = ()
    allow_anonymous_network: bool = False
    # A cluster node: the shared PostgreSQL (no password in the URL), the address clients use
    # (the load balancer's; the tokens' issuer), and the S3 prefix of the shared files.
    database_url: str | None = None
    public_url: str | None = None
    shared_config: str | None = None

    @property
    def cluster(self) -> bool:
        return self.database_url is not None


def check_options(options: CloudInitOptions) -> None:
    """Raise :class:`DeployOptionError` naming the first option that cannot work."""
    if not _BUCKET.fullmatch(options.bucket):
        raise DeployOptionError(f"--bucket: {options.bucket!r} is not an S3 bucket name")
    if options.region is not None and not _REGION.fullmatch(options.region):
        raise DeployOptionError(f"--region: {options.region!r} is not an AWS region name")
    if not options.prefix.isprintable():
        raise DeployOptionError("--prefix must not hold control characters")
    if not options.package.strip() or any(ch.isspace() for ch in options.package):
        raise DeployOptionError("--package must be one pip requirement without spaces")
    tls = options.tls_cert_path is not None or options.tls_key_path is not None
    if tls and (options.tls_cert_path is None or options.tls_key_path is None):
        raise DeployOptionError("--tls-cert-path and --tls-key-path must be given together")
    for path in (options.tls_cert_path, options.tls_key_path):
        if path is not None and (not path.startswith("/") or not path.isprintable()):
            raise DeployOptionError(f"TLS paths must be absolute on the instance: {path!r}")
    if not 1 <= options.port <= 65535:
        raise DeployOptionError(f"--port: {options.port} is not a TCP port")
    try:
        parse_trusted(options.trusted_proxies)
    except ValueError as error:
        raise DeployOptionError(f"--trusted-proxy: {error}") from None
    for user in options.htpasswd_users:
        try:
            validate_username(user)
        except ValueError as error:
            raise DeployOptionError(f"--htpasswd-user {user!r}: {error}") from None
    if tls == options.behind_load_balancer:
        raise DeployOptionError(
            "choose one: built-in TLS (--tls-cert-path and --tls-key-path) or "
            "--behind-load-balancer (TLS ends at the load balancer)"
        )
    if options.behind_load_balancer and not options.trusted_proxies:
        raise DeployOptionError(
            "--behind-load-balancer needs --trusted-proxy CIDR (the load balancer's subnets "
            "or the VPC's CIDR), so that its X-Forwarded-* headers are believed"
        )
    if options.trusted_proxies and not options.behind_load_balancer:
        raise DeployOptionError("--trusted-proxy goes with --behind-load-balancer")
    _check_cluster_options(options)
    if not options.htpasswd_users and not options.allow_anonymous_network and not options.cluster:
        raise DeployOptionError(
            "the registry would be open to anyone who reaches it: give --htpasswd-user NAME "
            "(repeatable), or --allow-anonymous-network if that is intended"
        )


def _check_cluster_options(options: CloudInitOptions) -> None:
    cluster_only = {"--public-url": options.public_url, "--shared-config": options.shared_config}
    if not options.cluster:
        for flag, value in cluster_only.items():
            if value is not None:
                raise DeployOptionError(f"{flag} goes with --database-url (a cluster node)")
        return
    assert options.database_url is not None
    url = urlsplit(options.database_url)
    if url.scheme not in ("postgresql", "postgresql+psycopg") or not url.hostname:
        raise DeployOptionError(
            "--database-url must be a PostgreSQL URL: postgresql://USER@HOST:5432/DATABASE"
        )
    if url.password is not None:
        raise DeployOptionError(
            "--database-url must not hold a password (the EC2 API shows user-data to anyone "
            "who may describe the instance): put it in a pgpass file under --shared-config"
        )
    for flag, value in cluster_only.items():
        if value is None:
            raise DeployOptionError(f"a cluster node (--database-url) needs {flag}")
    assert options.public_url is not None and options.shared_config is not None
    public = urlsplit(options.public_url)
    origin_only = public.path in ("", "/") and not public.query
    if public.scheme not in ("http", "https") or not public.hostname or not origin_only:
        raise DeployOptionError(
            "--public-url must be the load balancer's address, e.g. https://registry.example.com"
        )
    shared = urlsplit(options.shared_config)
    if shared.scheme != "s3" or not _BUCKET.fullmatch(shared.hostname or ""):
        raise DeployOptionError("--shared-config must be s3://BUCKET/PREFIX/")
    for value in (options.database_url, options.public_url, options.shared_config):
        if not value.isprintable() or any(ch.isspace() for ch in value):
            raise DeployOptionError(f"{value!r}: no spaces or control characters")
    if not options.behind_load_balancer:
        raise DeployOptionError("a cluster node (--database-url) goes --behind-load-balancer")
    if options.htpasswd_users:
        raise DeployOptionError(
            "--htpasswd-user makes passwords on each instance, so nodes would disagree; a "
            "cluster's users are the htpasswd file under --shared-config"
        )


def _database_url(url: str) -> str:
    """The driver Moorage installs (``moorage[postgres]``: psycopg 3) named in the URL."""
    scheme, _, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if scheme == "postgresql" else url


def moorage_config(options: CloudInitOptions) -> dict[str, Any]:
    """The ``/etc/moorage/moorage.yaml`` the options imply (only what differs from defaults)."""
    s3: dict[str, Any] = {"bucket": options.bucket}
    if options.prefix:
        s3["prefix"] = options.prefix.strip("/")
    if options.region:
        s3["region"] = options.region
    s3["redirect"] = options.redirect
    config: dict[str, Any] = {
        "listen": {"host": "0.0.0.0", "port": options.port},
        "storage": {"backend": "s3", "data_dir": DATA_DIR, "s3": s3},
    }
    if options.htpasswd_users:
        config["auth"] = {"htpasswd": HTPASSWD_PATH}
    if options.tls_cert_path and options.tls_key_path:
        config["tls"] = {"cert": options.tls_cert_path, "key": options.tls_key_path}
    if options.trusted_proxies:
        config["proxy"] = {"trusted": list(options.trusted_proxies)}
    if options.allow_anonymous_network:
        config["allow_anonymous_network"] = True
    if options.cluster:
        assert options.database_url is not None and options.public_url is not None
        config["database"] = {"url": _database_url(options.database_url)}
        config["auth"] = {
            "htpasswd": HTPASSWD_PATH,
            "policy_file": POLICY_PATH,
            "token": {
                "issuer": options.public_url.rstrip("/"),
                "key_file": TOKEN_KEY_PATH,
                "cert_file": TOKEN_CERT_PATH,
            },
        }
    return config


def command_line(options: CloudInitOptions) -> str:
    """The ``moorage deploy cloud-init`` invocation that renders these options (recorded in the
    user-data, so that a rendered file says how to make it again)."""
    args = ["moorage", "deploy", "cloud-init", "--bucket", options.bucket]
    if options.prefix:
        args += ["--prefix", options.prefix]
    if options.region:
        args += ["--region", options.region]
    args.append("--redirect" if options.redirect else "--no-redirect")
    if options.port != 5000:
        args += ["--port", str(options.port)]
    if options.tls_cert_path and options.tls_key_path:
        args += ["--tls-cert-path", options.tls_cert_path, "--tls-key-path", options.tls_key_path]
    if options.behind_load_balancer:
        args.append("--behind-load-balancer")
    for proxy in options.trusted_proxies:
        args += ["--trusted-proxy", proxy]
    for user in options.htpasswd_users:
        args += ["--htpasswd-user", user]
    if options.allow_anonymous_network:
        args.append("--allow-anonymous-network")
    if options.database_url:
        args += ["--database-url", options.database_url]
    if options.public_url:
        args += ["--public-url", options.public_url]
    if options.shared_config:
        args += ["--shared-config", options.shared_config]
    args += ["--package", options.package]
    return shlex.join(args)


def _install_parameters(options: CloudInitOptions) -> str:
    users = " ".join(shlex.quote(user) for user in options.htpasswd_users)
    shared = " ".join(SHARED_FILES) if options.cluster else ""
    optional = " ".join(OPTIONAL_SHARED_FILES) if options.cluster else ""
    return "\n".join(
        [
            f"PACKAGE={shlex.quote(options.package)}",
            f"REGION={shlex.quote(options.region or '')}",
            f"HTPASSWD_USERS=({users})",
            f"TLS_CERT={shlex.quote(options.tls_cert_path or '')}",
            f"TLS_KEY={shlex.quote(options.tls_key_path or '')}",
            f"SHARED_CONFIG={shlex.quote(options.shared_config or '')}",
            f"SHARED_FILES=({shared})",
            f"OPTIONAL_SHARED_FILES=({optional})",
        ]
    )


def template(name: str) -> str:
    """A file of ``moorage/deploy/templates`` (package data)."""
    return files("moorage.deploy").joinpath("templates", name).read_text(encoding="utf-8")


def fill(text: str, values: dict[str, str]) -> str:
    """Replace each ``{{ name }}``; a placeholder without a value is a bug, not a blank.
    (Not ``string.Template``: its ``$`` would collide with the shell script's variables.)"""

    def value(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(value, text)


def _indented(text: str) -> str:
    return "\n".join(_INDENT + line if line else "" for line in text.rstrip("\n").split("\n"))


def render_cloud_init(options: CloudInitOptions) -> str:
    """The ``#cloud-config`` user-data for ``options``. Raises :class:`DeployOptionError`."""
    check_options(options)
    config = yaml.safe_dump(moorage_config(options), sort_keys=False, default_flow_style=False)
    install = fill(template("install.sh"), {"parameters": _install_parameters(options)})
    return fill(
        template("user-data.yaml"),
        {
            # A comment line: check_options lets no newline into any value.
            "command": command_line(options),
            "config": _indented(config),
            "unit": _indented(template("moorage.service")),
            "install": _indented(install),
        },
    )
