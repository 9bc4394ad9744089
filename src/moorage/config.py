"""One typed settings object: a YAML file, overridden by ``MOORAGE_*`` environment variables,
overridden by command-line flags. Nested keys use ``__`` in variable names, for example
``MOORAGE_LIMITS__MANIFEST_MAX_BYTES=8388608``. The YAML file is named by ``--config`` or
``MOORAGE_CONFIG``. The classic docker-registry's variables (``SETTINGS_FLAVOR=s3``,
``AWS_BUCKET``, ...; see :mod:`moorage.classic_env`) sit between the file and ``MOORAGE_*``.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from moorage.classic_env import ClassicEnvError, classic_settings
from moorage.cpus import auto_workers

CONFIG_FILE_VARIABLE = "MOORAGE_CONFIG"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(5000, ge=0, le=65535)


class S3Settings(_Section):
    """An S3 bucket (AWS, or any S3-compatible store through ``endpoint_url``)."""

    bucket: str = ""
    # Key prefix under which everything is stored (the classic registry's STORAGE_PATH).
    prefix: str = ""
    region: str | None = None
    # For MinIO, Ceph RGW, moto...; empty means AWS.
    endpoint_url: str | None = None
    # Empty means the AWS default chain (environment, profile, EC2 instance role).
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    session_token: SecretStr | None = None
    # Send blob GETs to a pre-signed URL (307) instead of streaming the bytes through Moorage.
    redirect: bool = False
    redirect_expiry_seconds: int = Field(300, gt=0, le=7 * 86400)
    # Size of each multipart part: the most a single upload buffers in memory.
    part_size_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024, le=512 * 1024 * 1024)

    # --- S3 validation (issue 4, operator side) ---
    @field_validator("prefix")
    @classmethod
    def _bare_prefix(cls, prefix: str) -> str:
        # "/registry/" and "registry" name the same keys; the backend joins with "/" itself.
        return prefix.strip("/")

    @field_validator("endpoint_url")
    @classmethod
    def _http_endpoint(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url or None


# An nginx location prefix: a path of URI-safe characters that begins and ends with "/". Nothing
# that nginx would treat as arguments ("?"), a fragment, an escape or a named location ("@").
_ACCEL_PREFIX = re.compile(r"/(?:[A-Za-z0-9._~-]+/)*")


class StorageSettings(_Section):
    backend: Literal["filesystem", "s3"] = "filesystem"
    # Blobs (filesystem backend), the SQLite database and the token signing key live here.
    data_dir: Path = Path("moorage-data")
    s3: S3Settings = S3Settings()
    # Behind nginx: answer an authorized blob GET that nginx passed on with `X-Sendfile-Type:
    # X-Accel-Redirect` with `X-Accel-Redirect: <prefix><alg>/<2 hex>/<hex>` and no body, so that
    # nginx sends the file itself from an `internal` location that aliases <data_dir>/blobs/
    # (docs/deploy/nginx.md). None: Moorage sends the bytes.
    accel_redirect: str | None = None

    @field_validator("accel_redirect")
    @classmethod
    def _location_prefix(cls, prefix: str | None) -> str | None:
        if not prefix:
            return None
        segments = prefix.split("/")
        if not _ACCEL_PREFIX.fullmatch(prefix) or "." in segments or ".." in segments:
            raise ValueError(
                "must be an nginx location prefix that starts and ends with '/' "
                "and holds only letters, digits and . _ ~ - (e.g. /_moorage_blobs/)"
            )
        return prefix

    @model_validator(mode="after")
    def _backend_requirements(self) -> StorageSettings:
        # A model check, not a field one: the s3 section may be absent (all defaults).
        if self.backend == "s3" and not self.s3.bucket:
            raise ValueError(
                "storage.s3.bucket is required when storage.backend is s3 "
                "(or MOORAGE_STORAGE__S3__BUCKET, or the classic AWS_BUCKET)"
            )
        if self.backend == "s3" and self.accel_redirect is not None:
            # nginx can only send files it can open; S3 has storage.s3.redirect instead.
            raise ValueError(
                "storage.accel_redirect works only with the filesystem backend "
                "(on S3, use storage.s3.redirect)"
            )
        return self

    # --- end S3 validation ---


class DatabaseSettings(_Section):
    # SQLAlchemy URL; empty means SQLite in the data directory.
    url: str = ""
    # What `moorage serve` (and the CLI) may do to an older schema: `auto` upgrades it at
    # start, `create` only creates the schema in an empty database, `never` leaves everything
    # to `moorage db upgrade`. Unset: `auto` on SQLite (one node), `create` on PostgreSQL,
    # where several nodes of different versions may share the database during an upgrade
    # (docs/deploy/upgrade.md). A schema newer than the code is refused whatever this says.
    migrate: Literal["auto", "create", "never"] | None = None
    # Connections each process (every worker of every node) may open: pool_size kept open,
    # max_overflow more under load. A request that cannot get one within pool_timeout seconds
    # is answered 503 with Retry-After. See docs/configuration.md for the arithmetic against
    # PostgreSQL's max_connections.
    pool_size: int = Field(16, ge=1, le=1000)
    max_overflow: int = Field(32, ge=0, le=1000)
    pool_timeout: float = Field(5.0, gt=0, le=300)
    # Behind PgBouncer in transaction pooling mode: no server-side prepared statements (psycopg
    # prepares a statement after 5 runs, and PgBouncer before 1.21 hands the next transaction
    # another server connection that does not have it).
    pgbouncer: bool = False

    @property
    def migrate_mode(self) -> Literal["auto", "create", "never"]:
        if self.migrate is not None:
            return self.migrate
        return "auto" if not self.url or self.url.startswith("sqlite") else "create"


class LimitsSettings(_Section):
    manifest_max_bytes: int = Field(4 * 1024 * 1024, gt=0)
    page_size_max: int = Field(1000, gt=0)
    page_size_default: int = Field(1000, gt=0)
    upload_expiry_seconds: int = Field(24 * 3600, gt=0)
    # A request body that goes this long without a byte arriving is answered 408 (a partial
    # upload chunk is dropped): a client trickling a body would otherwise hold its connection,
    # and an upload session, for as long as it liked.
    body_idle_timeout_seconds: float = Field(30.0, gt=0)
    # Request headers larger than this in total (names, values, ": " and CRLF) get 431. Below
    # 1 KiB ordinary requests would fail; granian refuses heads over ~400 KiB by itself.
    header_max_bytes: int = Field(16 * 1024, ge=1024)


class TokenSettings(_Section):
    """The built-in token service (Docker token spec) and the tokens /v2 trusts."""

    # With the service on, /v2 challenges with Bearer (and still accepts Basic credentials).
    enabled: bool = True
    # Names the registry in the challenge, the `aud` claim and the `service` parameter.
    service: str = "moorage"
    issuer: str = "moorage"
    expiry_seconds: int = Field(300, gt=0, le=86400)
    refresh_expiry_seconds: int = Field(14 * 86400, gt=0)
    # ES256 signing key and certificate (PEM); generated in <data_dir>/auth/ when not set.
    key_file: Path | None = None
    cert_file: Path | None = None
    # Put the certificate chain (x5c) in every token header; the `kid` alone identifies the key.
    include_x5c: bool = False
    # An external token issuer to trust instead of (or beside) our own keys: its issuer name and
    # either a PEM bundle of its signing certificates or a JWKS file.
    trusted_issuer: str | None = None
    trusted_certs_file: Path | None = None
    trusted_jwks_file: Path | None = None


class AuthSettings(_Section):
    # An htpasswd file (any format Apache's htpasswd writes); reloaded when it changes.
    htpasswd: Path | None = None
    # A YAML policy file (users, groups, repository globs, actions); see docs/auth.md.
    policy_file: Path | None = None
    # The policy file is re-read this often at most (per worker), so a change reaches every
    # node within this bound; an invalid new file keeps the previous policy.
    policy_check_seconds: float = Field(2.0, gt=0, le=3600)
    # A verified API token is remembered this long per worker: a revocation (from the CLI or
    # another node) takes effect within it. 0 checks the database on every request.
    api_token_cache_seconds: float = Field(30.0, ge=0, le=3600)
    # The realm shown in Basic challenges.
    realm: str = "moorage"
    token: TokenSettings = TokenSettings()


class TlsSettings(_Section):
    cert: Path | None = None
    key: Path | None = None


class ProxySettings(_Section):
    # Addresses or CIDR networks of proxies whose X-Forwarded-Proto / X-Forwarded-Host /
    # X-Forwarded-For are believed. Headers from anyone else are ignored.
    trusted: list[str] = []

    @field_validator("trusted")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        # Checked here so that `moorage config check` names a bad entry, not only `serve`.
        for entry in entries:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return entries


class MetricsSettings(_Section):
    """``GET /metrics`` on the main port. Metrics tell who pushes what and when, so the endpoint
    answers loopback callers only (after the trusted-proxy rules), or, with ``token`` set,
    whoever sends it as a bearer token."""

    enabled: bool = True
    token: SecretStr | None = None
    # Repository, manifest and tag counts are recounted at most this often (per worker).
    inventory_refresh_seconds: float = Field(30.0, ge=0)


class HealthSettings(_Section):
    # How long /readyz waits for each dependency (database, blob store, events backlog) before
    # it names it failing with a TimeoutError and answers 503.
    check_timeout_seconds: float = Field(2.0, gt=0, le=60)


LogLevel = Literal["critical", "error", "warning", "warn", "info", "debug", "notset"]


class LogSettings(_Section):
    # One line per request is logged at info; `warning` silences those lines.
    level: LogLevel = "info"
    # `text` is readable on a terminal; `json` is one object per line for log collectors.
    format: Literal["text", "json"] = "text"


class UiSettings(_Section):
    """The web UI under /ui/ (docs/ui.md)."""

    enabled: bool = True
    # How long a sign-in lasts; the session ends earlier when the user's password changes.
    session_seconds: int = Field(8 * 3600, ge=60, le=30 * 86400)
    # The key that signs session cookies. Unset: derived from the token signing key, which every
    # worker (and every node sharing auth.token.key_file) already shares.
    session_secret: SecretStr | None = None
    # Failed sign-ins allowed per user name, and per client address, per window.
    sign_in_failures_per_user: int = Field(5, ge=1)
    sign_in_failures_per_address: int = Field(20, ge=1)
    sign_in_window_seconds: int = Field(15 * 60, ge=1)
    # Rows per page of repositories and of tags.
    page_size: int = Field(50, ge=1, le=1000)


# --- garbage collection (docs/gc.md) ---
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(value: object) -> float:
    """Seconds from a number of seconds or a text like ``90s``, ``10m``, ``1h30m``, ``7d``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace(" ", "")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_PART.findall(text)
            if "".join(number + unit for number, unit in parts) != text:
                raise ValueError(
                    f"{value!r} is not a duration: give seconds, or e.g. 90s, 10m, 1h30m, 7d"
                ) from None
            seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    else:
        raise ValueError("must be a duration: seconds, or e.g. 90s, 10m, 1h30m, 7d")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


#: Seconds, written as a number or as ``90s``, ``10m``, ``1h30m``, ``7d``.
Duration = Annotated[float, BeforeValidator(parse_duration)]


def _pattern_list(value: Any) -> Any:
    # One pattern may be written alone, as `repositories: "team/*"` always was in gc rules.
    return [value] if isinstance(value, str) else value


def _valid_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    # Imported here: the policy module imports this one.
    from moorage.auth.policy import validate_repository_pattern

    for pattern in patterns:
        validate_repository_pattern(pattern)
    return patterns


#: ``repositories`` wherever a setting applies to some repositories (policy rules, gc rules,
#: quotas): a list of globs (``*`` any characters including ``/``, ``?`` one), or one glob.
RepositoryPatterns = Annotated[
    tuple[str, ...],
    BeforeValidator(_pattern_list),
    AfterValidator(_valid_patterns),
    Field(min_length=1),
]

log = logging.getLogger("moorage.config")


def renamed_to_repositories(section: str, old: str, data: Any) -> Any:
    """``data`` (a section's raw mapping) with its deprecated key ``old`` renamed to
    ``repositories``, which a warning in the log asks for instead."""
    if not isinstance(data, dict) or old not in data:
        return data
    if "repositories" in data:
        raise ValueError(f"give `repositories` only (`{old}` is its deprecated name)")
    log.warning(
        "%s: `%s` is deprecated, write `repositories` (a list of repository patterns, as in "
        "the access policy; a single pattern is accepted too)",
        section,
        old,
    )
    return {"repositories" if key == old else key: value for key, value in data.items()}


class UntaggedRule(_Section):
    """Untagged manifests of repositories matching any of ``repositories`` are collected once
    ``older_than`` old."""

    repositories: RepositoryPatterns
    older_than: Duration


_TAG_PATTERN = re.compile(r"[A-Za-z0-9_.*?-]{1,128}")


class RetentionRuleSettings(_Section):
    """Tags of repositories matching ``repositories`` that go: not matching ``keep_tags``,
    not among the ``keep_last`` most recently pushed, and (if given) pushed longer than
    ``remove_older_than`` ago. A manifest left with no tag goes with its last one."""

    repositories: RepositoryPatterns
    keep_last: int | None = Field(None, ge=0)
    keep_tags: list[str] = []
    remove_older_than: Duration | None = None

    @field_validator("keep_tags")
    @classmethod
    def _tag_patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if not _TAG_PATTERN.fullmatch(pattern):
                raise ValueError(f"tag pattern {pattern!r} may hold only A-Z a-z 0-9 _ . - and * ?")
        return patterns

    @model_validator(mode="after")
    def _removes_something(self) -> RetentionRuleSettings:
        if self.keep_last is None and self.remove_older_than is None:
            raise ValueError("a retention rule needs keep_last or remove_older_than")
        return self


class GcSettings(_Section):
    # Time a client has between a blob (upload, mount, HEAD) and the manifest that uses it;
    # unreferenced links and unknown objects younger than this are left alone.
    grace: Duration = 3600.0
    # The server collects this often (one worker at a time, cluster-wide); 0 turns it off.
    interval: Duration = 600.0
    # The server's full sweeps (listing the blob store for orphans; expiring uploads) run at
    # most this often.
    full_interval: Duration = 86400.0
    # Only report: the server logs what it would collect, `moorage gc` runs as --dry-run.
    dry_run: bool = False
    # Referrers (signatures, SBOMs) go when their subject manifest goes.
    referrers: bool = True
    # Untagged manifests are kept unless a rule here matches their repository (first match).
    untagged: list[UntaggedRule] = []
    # Tag retention, per repository pattern (first match); off unless rules are given.
    retention: list[RetentionRuleSettings] = []
    # How gently it runs beside requests: a write transaction ends after batch_time, and
    # the collector's transactions take at most max_duty of the time (it sleeps the rest).
    # Unset: by database (SQLite 1ms and 0.0125, PostgreSQL 50ms and 0.5; docs/gc.md).
    batch_time: Duration | None = Field(None, gt=0, le=10)
    max_duty: float | None = Field(None, gt=0, le=1)
    # The collector's CPU and I/O priority: idle (it runs when clients leave a core free, and
    # never preempts them), or normal (that of the process starting it). docs/gc.md#costs.
    priority: Literal["idle", "normal"] = "idle"

    @field_validator("interval")
    @classmethod
    def _not_too_often(cls, interval: float) -> float:
        if 0 < interval < 1:
            raise ValueError("must be 0 (off) or at least 1 second")
        return interval

    def untagged_age(self, repository: str) -> float | None:
        """How old an untagged manifest of ``repository`` must be to go, or None (kept)."""
        from moorage.auth.policy import matches_any

        for rule in self.untagged:
            if matches_any(rule.repositories, repository):
                return rule.older_than
        return None


# --- end garbage collection ---


# --- quotas (issue 10) ---
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: Any) -> Any:
    """``10GiB``, ``500 MB``, ``1.5TB`` or a plain number of bytes, as a number of bytes.
    Anything else is passed on for pydantic to refuse with its own message."""
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(
            f"{value!r} is not a size: write bytes, or a number with B, kB, MB, GB, TB "
            "(powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)"
        )
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


ByteSize = Annotated[int, BeforeValidator(parse_size), Field(ge=0)]


class QuotaSettings(_Section):
    """Limits for each repository matching any of ``repositories`` (the first matching entry
    wins)."""

    repositories: RepositoryPatterns
    max_bytes: ByteSize | None = None
    max_tags: int | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _old_key(cls, data: Any) -> Any:
        return renamed_to_repositories("quotas", "repository", data)

    @model_validator(mode="after")
    def _limits(self) -> QuotaSettings:
        if self.max_bytes is None and self.max_tags is None:
            raise ValueError("a quota needs max_bytes, max_tags or both")
        return self


# --- end quotas ---


# --- events and audit (docs/operations.md) ---
class EndpointSettings(_Section):
    """A webhook endpoint: which events it gets and how they are sent."""

    url: str
    # The key its deliveries are kept under (`moorage events list`); default: the URL.
    name: str | None = None
    # Repository globs (the policy's syntax) and event types; default: all of them.
    repositories: RepositoryPatterns = ("*",)
    types: list[str] = []
    # The HMAC-SHA256 key of the Moorage-Signature header; without it the header is not sent.
    secret: SecretStr | None = None
    timeout: Duration = 10.0
    headers: dict[str, str] = {}
    # Networks (CIDR) this endpoint may resolve to although they are not public addresses.
    allow_networks: list[str] = []

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"https?://[^/?#]+", url):
            raise ValueError("must be an http:// or https:// URL")
        return url

    @field_validator("types")
    @classmethod
    def _known_types(cls, types: list[str]) -> list[str]:
        from moorage.events.cloudevents import TYPES

        unknown = sorted(set(types) - set(TYPES))
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {list(TYPES)}")
        return types

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)
        return networks

    @property
    def key(self) -> str:
        return self.name or self.url


class EventsSettings(_Section):
    endpoints: list[EndpointSettings] = []
    # Events are recorded when an endpoint is configured, unless set here.
    enabled: bool | None = None
    # CloudEvents ``source`` of every event (a URI reference naming this registry).
    source: str = "/moorage"
    # Also emit dev.moorage.manifest.pulled for each manifest GET (a write per pull).
    pull: bool = False
    # Loopback, private and link-local endpoint addresses are refused unless this is true.
    allow_private_networks: bool = False
    # Retries: after 2 s, 4 s, 8 s... at most backoff_max apart, max_attempts in all.
    backoff_initial: Duration = 2.0
    backoff_max: Duration = 3600.0
    max_attempts: int = Field(15, ge=1)
    # Delivered events are deleted after this long; failed ones are kept for redelivery.
    retention: Duration = 7 * 86400.0

    @property
    def recording(self) -> bool:
        return bool(self.endpoints) if self.enabled is None else self.enabled

    @model_validator(mode="after")
    def _distinct_endpoints(self) -> EventsSettings:
        # Deliveries are kept per endpoint name: two endpoints under one name would share them.
        keys = [endpoint.key for endpoint in self.endpoints]
        twice = sorted({key for key in keys if keys.count(key) > 1})
        if twice:
            raise ValueError(f"endpoints need distinct names (or URLs): {twice}")
        return self


class ClusterSettings(_Section):
    """Several nodes on one database (docs/deploy/cluster.md)."""

    # Every serving process beats a row in the database each second; a lease holder on another
    # host (or in another pid namespace) whose beats are older than this is presumed dead, and
    # its upload sessions and jobs are taken over (services/liveness.py). Lower takes over
    # sooner; too low declares a node that stalls (CPU starvation, a slow database) dead while
    # it runs, which costs its clients a failed request, never data.
    node_timeout: Duration = 5.0

    @field_validator("node_timeout")
    @classmethod
    def _above_the_beat(cls, timeout: float) -> float:
        if timeout < 3:
            raise ValueError("must be at least 3s (processes beat every second)")
        return timeout


class AuditSettings(_Section):
    enabled: bool = True
    # Entries older than this are deleted by the background worker.
    retention: Duration = 90 * 86400.0


# --- end events and audit ---


class Settings(BaseSettings):
    """Everything Moorage can be told; every field has a safe default."""

    model_config = SettingsConfigDict(
        env_prefix="MOORAGE_", env_nested_delimiter="__", extra="forbid"
    )

    listen: ListenSettings = ListenSettings()
    storage: StorageSettings = StorageSettings()
    database: DatabaseSettings = DatabaseSettings()
    limits: LimitsSettings = LimitsSettings()
    auth: AuthSettings = AuthSettings()
    tls: TlsSettings = TlsSettings()
    proxy: ProxySettings = ProxySettings()
    gc: GcSettings = GcSettings()
    # Per repository pattern, checked when a manifest is pushed (docs/gc.md).
    quotas: list[QuotaSettings] = []
    ui: UiSettings = UiSettings()
    # Serving a non-loopback address with no authentication configured must be asked for.
    allow_anonymous_network: bool = False
    delete_enabled: bool = True
    # "auto" (the default): one per usable CPU, at most 8 (moorage.cpus); read as that number.
    workers: int = Field(default_factory=auto_workers, ge=1, le=64)
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    health: HealthSettings = HealthSettings()
    events: EventsSettings = EventsSettings()
    audit: AuditSettings = AuditSettings()
    cluster: ClusterSettings = ClusterSettings()
    # granian's own access log, beside Moorage's request log (which knows routes and users).
    access_log: bool = False

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_workers(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            if value.strip().lower() != "auto":
                raise ValueError("a number of worker processes (1 to 64), or auto")
            return auto_workers()
        return value

    @model_validator(mode="before")
    @classmethod
    def _top_level_log_level(cls, data: Any) -> Any:
        # Before the `log` section, the level was the top-level `log_level`; files, variables
        # (MOORAGE_LOG_LEVEL is not read: only MOORAGE_LOG__LEVEL) and callers that still say
        # so keep working. An explicit `log.level` wins.
        if isinstance(data, dict) and "log_level" in data:
            data = dict(data)
            level = data.pop("log_level")
            section = data.get("log")
            section = dict(section) if isinstance(section, dict) else {}
            section.setdefault("level", level)
            data["log"] = section
        return data

    @property
    def auth_enabled(self) -> bool:
        return self.auth.htpasswd is not None or self.auth.token.trusted_issuer is not None

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{self.storage.data_dir.resolve() / 'moorage.db'}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Flags beat MOORAGE_*, which beat the classic registry's variables, which beat the file.
        return (
            init_settings,
            env_settings,
            ClassicEnvSource(settings_cls),
            YamlConfigSettingsSource(settings_cls),
        )


class ClassicEnvSource(PydanticBaseSettingsSource):
    """The classic docker-registry variables (``SETTINGS_FLAVOR``, ``AWS_BUCKET``, ...)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ yields the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        return classic_settings(os.environ)


class ConfigError(Exception):
    """The configuration is invalid; the message names each offending key."""


def _describe(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        lines.append(f"{key}: {problem['msg']}")
    return "\n".join(lines)


def _check_keys(data: dict[Any, Any], prefix: str) -> None:
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"{prefix}{key!r}: keys must be strings")
        if isinstance(value, dict):
            _check_keys(value, f"{prefix}{key}.")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from ``config_file`` (or ``$MOORAGE_CONFIG``), env and ``overrides``.

    ``overrides`` take nested dicts, e.g. ``listen={"port": 5001}``. Raises :class:`ConfigError`.
    """
    path = config_file or (Path(p) if (p := os.environ.get(CONFIG_FILE_VARIABLE)) else None)
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys")
        _check_keys(data or {}, "")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    try:
        return FileSettings(**overrides)
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    except SettingsError as error:  # e.g. MOORAGE_LISTEN='not json'
        raise ConfigError(str(error)) from None
    except ClassicEnvError as error:  # e.g. AWS_KEY without AWS_SECRET
        raise ConfigError(str(error)) from None
