"""``moorage``: serve the registry, check configuration, migrate the database."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import multiprocessing
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from moorage.api.forwarded import parse_trusted
from moorage.cli import audit, deploy, events, gc, lifecycle, storage, tokens, users
from moorage.config import CONFIG_FILE_VARIABLE, ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from granian.server import MPServer, MTServer


def _load(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as error:
        raise click.ClickException(f"invalid configuration:\n{error}") from None


def _ensure_port_free(host: str, port: int) -> None:
    """Refuse to start when something already listens there. granian binds with SO_REUSEPORT,
    so without this a second registry would silently share the port with the first."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {error.strerror}"
            ) from None


def _prepare_here() -> str | None:
    """Check (or migrate) the database's schema, the blob store and the hashing library; a
    message if one is unusable."""
    from moorage.app import build_registry
    from moorage.metadata.migrate import SchemaMismatch
    from moorage.services.hashing import LibcryptoUnavailable
    from moorage.storage.port import StorageUnavailable

    try:
        build_registry(load_settings())
    except LibcryptoUnavailable as error:
        return f"hashing: {error}"
    except StorageUnavailable as error:  # e.g. a missing bucket, said plainly
        return f"storage: {error}"
    except SchemaMismatch as error:  # a node never runs on a schema it does not know
        return f"database: {error}"
    return None


def _prepare(settings: Settings) -> str | None:
    """Run :func:`_prepare_here` before the workers start. With S3 it runs in a fresh
    interpreter: the S3 client's runtime threads must not exist in this process when granian
    forks its workers (a forked copy of them deadlocks)."""
    if settings.storage.backend != "s3":
        return _prepare_here()
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as child:
        return child.submit(_prepare_here).result()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse_open_network(settings: Settings) -> None:
    """Secure by default: with no authentication, serve loopback only unless told otherwise."""
    if settings.auth_enabled:
        return
    if _is_loopback(settings.listen.host):
        click.echo(
            "moorage: no authentication configured; serving loopback only "
            "(give --htpasswd FILE to require logins)",
            err=True,
        )
        return
    if not settings.allow_anonymous_network:
        raise click.ClickException(
            f"refusing to serve {settings.listen.host} with no authentication: anyone who can "
            "reach it could push and delete. Give --htpasswd FILE, or "
            "--allow-anonymous-network (allow_anonymous_network: true) if that is intended."
        )
    click.echo(f"moorage: WARNING: serving {settings.listen.host} with no authentication", err=True)


# --- TLS and trusted proxies (serve) -------------------------------------------------------


def _tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS with, or None for plain HTTP. Checked here
    because granian's own errors name neither the file nor the problem."""
    cert, key = settings.tls.cert, settings.tls.key
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise click.ClickException(
            "tls.cert and tls.key (--tls-cert and --tls-key) must be given together"
        )
    for what, path in (("certificate", cert), ("key", key)):
        try:
            path.open("rb").close()
        except OSError as error:
            raise click.ClickException(f"cannot read TLS {what} {path}: {error.strerror}") from None
    try:
        # The password callback keeps an encrypted key from prompting on the terminal.
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as error:
        raise click.ClickException(
            f"TLS certificate {cert} and key {key} cannot be used together (PEM certificate "
            f"chain and unencrypted PEM key expected): {error.reason or error}"
        ) from None
    return cert, key


def _check_trusted_proxies(settings: Settings) -> None:
    try:
        parse_trusted(settings.proxy.trusted)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


# --- end TLS and trusted proxies ------------------------------------------------------------


@click.group()
@click.version_option(package_name="moorage")
def main() -> None:
    """Moorage, a private OCI container registry."""


@main.command()
@click.option("--config", "config_file", type=click.Path(path_type=Path), help="YAML config file.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 5000).")
@click.option(
    "--data-dir", type=click.Path(path_type=Path), help="Where blobs and the database live."
)
@click.option("--workers", help="Worker processes, or auto: one per CPU, at most 8 (the default).")
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path),
    help="Serve HTTPS with this PEM certificate chain (tls.cert); needs --tls-key.",
)
@click.option(
    "--tls-key", type=click.Path(path_type=Path), help="The certificate's PEM key (tls.key)."
)
@click.option(
    "--htpasswd",
    type=click.Path(path_type=Path),
    help="Require logins from this htpasswd file (auth.htpasswd).",
)
@click.option(
    "--policy",
    type=click.Path(path_type=Path),
    help="Per-repository access rules (auth.policy_file); see docs/auth.md.",
)
@click.option(
    "--allow-anonymous-network",
    is_flag=True,
    default=None,
    help="Serve a non-loopback address with no authentication (allow_anonymous_network).",
)
def serve(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    workers: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    htpasswd: Path | None,
    policy: Path | None,
    allow_anonymous_network: bool | None,
) -> None:
    """Start the registry (filesystem + SQLite unless configured otherwise)."""
    # Flags become environment variables so that every worker process sees the same settings.
    flag_env = {
        "MOORAGE_LISTEN__HOST": host,
        "MOORAGE_LISTEN__PORT": None if port is None else str(port),
        "MOORAGE_STORAGE__DATA_DIR": None if data_dir is None else str(data_dir.resolve()),
        "MOORAGE_WORKERS": workers,
        "MOORAGE_TLS__CERT": None if tls_cert is None else str(tls_cert.resolve()),
        "MOORAGE_TLS__KEY": None if tls_key is None else str(tls_key.resolve()),
        "MOORAGE_AUTH__HTPASSWD": None if htpasswd is None else str(htpasswd.resolve()),
        "MOORAGE_AUTH__POLICY_FILE": None if policy is None else str(policy.resolve()),
        "MOORAGE_ALLOW_ANONYMOUS_NETWORK": "true" if allow_anonymous_network else None,
        CONFIG_FILE_VARIABLE: None if config_file is None else str(config_file.resolve()),
    }
    os.environ.update({key: value for key, value in flag_env.items() if value is not None})
    settings = _load(None)
    if "MOORAGE_STORAGE__DATA_DIR" not in os.environ:
        os.environ["MOORAGE_STORAGE__DATA_DIR"] = str(settings.storage.data_dir.resolve())

    problems = _auth_file_problems(settings)
    if problems:
        raise click.ClickException("invalid configuration:\n" + "\n".join(problems))
    _refuse_open_network(settings)
    tls = _tls_files(settings)
    _check_trusted_proxies(settings)
    _ensure_port_free(settings.listen.host, settings.listen.port)

    # Before anything imports prometheus-client (the migration below imports the app): it
    # reads the variable once, and every worker must write its figures to the same directory.
    from moorage.telemetry.multiprocess_dir import prepare_multiprocess_dir

    remove_metrics_dir = prepare_multiprocess_dir()
    try:
        _serve(settings, tls)
    finally:
        remove_metrics_dir()


def _serve(settings: Settings, tls: tuple[Path, Path] | None) -> None:
    # Check (or migrate) the schema once here, before workers start, so they never race each
    # other to do it, and a schema this code does not know stops the node before it listens.
    problem = _prepare(settings)
    if problem:
        raise click.ClickException(problem)

    scheme = "https" if tls else "http"
    click.echo(
        f"moorage: serving on {scheme}://{settings.listen.host}:{settings.listen.port} "
        f"(data in {settings.storage.data_dir.resolve()}, {settings.workers} worker(s))",
        err=True,
    )
    server = granian_server(settings, tls)
    try:
        server.serve()
    except RuntimeError as error:  # granian reports bind failures this way
        raise click.ClickException(
            f"cannot listen on {settings.listen.host}:{settings.listen.port}: {error}"
        ) from None


def granian_server(
    settings: Settings,
    tls: tuple[Path, Path] | None,
    target: str = "moorage.app:create_app",
    factory: bool = True,
) -> MPServer | MTServer:
    """The granian server `serve` runs. ``target`` is replaceable so that bench/ceiling.py can
    run a bare "hello" app under exactly the same server options (the framework's ceiling)."""
    from granian import Granian
    from granian.constants import Interfaces

    return Granian(
        target,
        factory=factory,
        address=settings.listen.host,
        port=settings.listen.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        log_level=settings.log.level,  # type: ignore[arg-type]  # granian's enum takes these
        respawn_failed_workers=True,
        log_access=settings.access_log,
        ssl_cert=tls[0] if tls else None,
        ssl_key=tls[1] if tls else None,
    )


@main.group()
def config() -> None:
    """Inspect configuration."""


def _auth_file_problems(settings: Settings) -> list[str]:
    """The files the auth settings name must exist and parse, as `serve` would need them."""
    from moorage.auth.htpasswd import HtpasswdAuthenticator, HtpasswdFileError
    from moorage.auth.policy import PolicyError, load_policy

    problems = []
    if settings.auth.htpasswd is not None:
        try:
            HtpasswdAuthenticator(settings.auth.htpasswd)
        except HtpasswdFileError as error:
            problems.append(f"auth.htpasswd: {error}")
    if settings.auth.policy_file is not None:
        try:
            load_policy(settings.auth.policy_file)
        except PolicyError as error:
            problems.append(f"auth.policy_file: {error}")
    return problems


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE (with the environment's overrides); name each bad key."""
    settings = _load(file)
    problems = _auth_file_problems(settings)
    if problems:
        raise click.ClickException("invalid configuration:\n" + "\n".join(problems))
    click.echo(f"{file}: ok")
    click.echo(settings.model_dump_json(indent=2))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--config", "config_file", type=click.Path(path_type=Path))
def db_upgrade(config_file: Path | None) -> None:
    """Apply pending migrations (once per database, before starting upgraded nodes)."""
    from moorage.metadata.migrate import newer_schema_message, schema_state, upgrade
    from moorage.metadata.sql import make_engine

    settings = _load(config_file)
    engine = make_engine(settings.database_url, pgbouncer=settings.database.pgbouncer)
    try:
        state = schema_state(engine)
        if state.newer:
            raise click.ClickException(newer_schema_message(state))
        upgrade(engine)
    finally:
        engine.dispose()
    if state.current == state.head:
        click.echo(f"database schema is up to date (revision {state.head})")
    else:
        click.echo(
            f"database schema upgraded from revision {state.current or '(empty)'} to {state.head}"
        )


main.add_command(users.user)
main.add_command(tokens.token)
main.add_command(deploy.deploy)
main.add_command(storage.storage)
main.add_command(gc.gc)
main.add_command(lifecycle.usage)
main.add_command(lifecycle.repo)
main.add_command(events.events)
main.add_command(audit.audit)

if __name__ == "__main__":
    sys.exit(main())
