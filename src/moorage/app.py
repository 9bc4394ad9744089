"""The composition root: the only place that picks concrete backends and wires services."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from cryptography.hazmat.primitives import serialization
from sqlalchemy import Engine
from starlette.applications import Starlette

from moorage.api import request_log
from moorage.api.audit_requests import AuditRecorder
from moorage.api.context import Registry
from moorage.api.forwarded import TrustedProxyHeaders
from moorage.api.metrics_endpoint import MetricsEndpoint
from moorage.api.observe import Recorder
from moorage.api.request_metrics import RequestMetrics
from moorage.api.server import build_app
from moorage.audit.trail import AuditTrail
from moorage.auth.api_tokens import ApiTokenAuthenticator, ApiTokenStore
from moorage.auth.gate import AccessGate
from moorage.auth.htpasswd import HtpasswdAuthenticator
from moorage.auth.jwt_tokens import TokenIssuer, make_verifier
from moorage.auth.policy import (
    DEFAULT_POLICY,
    PolicyAuthorizer,
    has_immutable_tags,
    matches_any,
)
from moorage.auth.policy_reload import ReloadingPolicyAuthorizer
from moorage.auth.port import Authenticator
from moorage.auth.signing_key import load_or_create
from moorage.config import Settings, load_settings
from moorage.events import worker as events_worker
from moorage.events.delivery import Deliverer
from moorage.events.endpoints import Endpoint, networks
from moorage.gc_child import ChildCollection, CollectionFailed
from moorage.heap import keep_freed_buffers
from moorage.metadata.audit_sql import SqlAuditLog
from moorage.metadata.browse_sql import SqlBrowseStore
from moorage.metadata.gc_port import ManifestPolicy
from moorage.metadata.gc_sql import Pace, SqlGcStore, default_pace
from moorage.metadata.job_leases import SqlJobLeases
from moorage.metadata.migrate import check_schema
from moorage.metadata.outbox import OutboxWriter, SqlEventStore
from moorage.metadata.presence_sql import SqlPresence
from moorage.metadata.sql import SqlMetadataStore, make_engine
from moorage.metadata.usage import Quota
from moorage.metadata.usage_sql import SqlUsageStore
from moorage.metadata.wal_checkpointer import WalCheckpointer
from moorage.priority import WriterThread
from moorage.services import hashing, liveness
from moorage.services.blobs import BlobService
from moorage.services.browse import BrowseService
from moorage.services.gc import GC_TURN_LEASE, Collector, CollectorBusy, RetentionRule
from moorage.services.jobs import JobLeases, LeaseLost, new_holder
from moorage.services.listing import ListingService
from moorage.services.manifests import ManifestService
from moorage.services.pagination import PageLimits
from moorage.services.repositories import RepositoryService
from moorage.services.upload_ids import UploadIds
from moorage.services.upload_ids import derive_key as derive_upload_key
from moorage.services.uploads import UploadService
from moorage.services.usage import Quotas, UsageService
from moorage.storage.filesystem import FilesystemBlobStore
from moorage.storage.port import BlobStore
from moorage.telemetry import metrics
from moorage.telemetry.batched_histogram import PendingObservations
from moorage.telemetry.db_pool import pool_sampler
from moorage.telemetry.exposition import exposition
from moorage.telemetry.inventory import InventoryCollector
from moorage.telemetry.log_format import configure_logging
from moorage.telemetry.storage_metrics import ObservedBlobStore, StorageFigures
from moorage.threads import in_thread
from moorage.web.app import build_ui, to_ui
from moorage.web.context import WebContext
from moorage.web.session import SessionSigner, derive_key
from moorage.web.throttle import SignInThrottle

log = logging.getLogger("moorage")

# How often each worker looks for abandoned upload sessions.
EXPIRY_SWEEP_SECONDS = 300.0
# How often each worker writes the audit entries it gathered.
AUDIT_FLUSH_SECONDS = 1.0
# How often each worker adds its storage figures and pool count to the metrics.
METRICS_PUBLISH_SECONDS = 1.0


def build_authorizer(settings: Settings) -> PolicyAuthorizer | ReloadingPolicyAuthorizer:
    """The policy file's rules, re-read when it changes; without one, the default policy."""
    auth = settings.auth
    if auth.policy_file is None:
        return PolicyAuthorizer(DEFAULT_POLICY)
    return ReloadingPolicyAuthorizer(auth.policy_file, auth.policy_check_seconds)


def build_gate(settings: Settings, engine: Engine) -> AccessGate:
    """Authentication and authorization as configured: off (loopback, everyone may do
    everything) unless an htpasswd file or a trusted token issuer is configured."""
    auth = settings.auth
    token = auth.token
    authorizer = build_authorizer(settings)
    if not settings.auth_enabled:
        return AccessGate(False, (), authorizer, token.service, realm=auth.realm)
    htpasswd = HtpasswdAuthenticator(auth.htpasswd) if auth.htpasswd is not None else None

    def user_exists(name: str) -> bool:
        return htpasswd is not None and htpasswd.has_user(name)

    def user_exists_recently(name: str) -> bool:
        # For every bearer request: the file is looked at once a second at most.
        return htpasswd is not None and htpasswd.has_user_recently(name)

    def credential_of(name: str) -> str | None:
        return htpasswd.stored_hash(name) if htpasswd is not None else None

    authenticators: list[Authenticator] = [
        ApiTokenAuthenticator(
            ApiTokenStore(engine, cache_seconds=auth.api_token_cache_seconds), user_exists
        )
    ]
    if htpasswd is not None:
        authenticators.append(htpasswd)

    issuer = verifier = None
    if token.enabled:
        key = load_or_create(token.key_file, token.cert_file, settings.storage.data_dir)
        issuer = TokenIssuer(
            key,
            token.issuer,
            token.expiry_seconds,
            token.refresh_expiry_seconds,
            include_x5c=token.include_x5c,
        )
        verifier = make_verifier(
            key,
            token.issuer,
            token.service,
            token.trusted_issuer,
            token.trusted_certs_file,
            token.trusted_jwks_file,
        )
    return AccessGate(
        True,
        authenticators,
        authorizer,
        token.service,
        issuer,
        verifier,
        credential_of,
        user_exists_recently,
        realm=auth.realm,
    )


# --- blob store choice (issue 4) ---
def build_blob_store(settings: Settings) -> BlobStore:
    """The blob store ``storage.backend`` names (not yet checked: see :meth:`BlobStore.check`)."""
    if settings.storage.backend == "s3":
        # Imported only when chosen: the S3 client is a large native library.
        from moorage.storage.s3 import S3BlobStore

        return S3BlobStore.from_settings(settings.storage.s3)
    return FilesystemBlobStore(settings.storage.data_dir)


# --- end blob store choice ---


def build_quotas(settings: Settings) -> Quotas:
    # One Quota per pattern, in order: an entry's limits apply to each repository it matches
    # alone, and refusals name the very pattern that matched.
    return Quotas(
        [
            Quota(pattern, q.max_bytes, q.max_tags)
            for q in settings.quotas
            for pattern in q.repositories
        ]
    )


def open_database(settings: Settings) -> Engine:
    """The configured database with its bounded pool, on a schema this code runs on: upgraded
    as ``database.migrate`` allows, else :class:`~moorage.metadata.migrate.SchemaMismatch`."""
    database = settings.database
    engine = make_engine(
        settings.database_url,
        database.pool_timeout,
        pool_size=database.pool_size,
        max_overflow=database.max_overflow,
        pgbouncer=database.pgbouncer,
    )
    try:
        check_schema(engine, database.migrate_mode)
    except BaseException:
        engine.dispose()
        raise
    return engine


def build_registry(
    settings: Settings,
    storage_figures: StorageFigures | None = None,
    transaction_figures: PendingObservations | None = None,
) -> Registry:
    """Open the backends the settings name, check (or migrate) the database's schema, and wire
    the services; with ``storage_figures``, every call to the blob store is measured there,
    with ``transaction_figures`` every write transaction (else, when metrics are on, straight
    into the histogram: the processes that never publish gathered figures)."""
    hashing.check()  # no libcrypto: stop here, saying why, not at the first upload
    settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_database(settings)
    observe: Callable[[float], None] | None = None
    if transaction_figures is not None:
        observe = transaction_figures.record
    elif settings.metrics.enabled:
        observe = metrics.DB_TRANSACTION_SECONDS.observe
    # A HEAD of a blob link under review restarts its grace at most every tenth of it.
    events = settings.events
    outbox = OutboxWriter(events.source, events.pull) if events.recording else None
    metadata = SqlMetadataStore(
        engine, observe, gc_touch_after=settings.gc.grace / 10, outbox=outbox
    )
    storage = build_blob_store(settings)
    if storage_figures is not None:
        storage = ObservedBlobStore(storage, storage_figures)
    if settings.storage.backend == "s3":
        # A missing bucket or wrong credentials stop start-up with StorageUnavailable naming
        # the failure (`moorage serve` prints it), instead of failing every request later.
        storage.check()
    limits = settings.limits
    # Lease holders on other hosts are judged by their beats (a process's name and liveness
    # are per process: see services/liveness.py).
    liveness.PROCESS.use(SqlPresence(metadata), settings.cluster.node_timeout)
    return Registry(
        uploads=UploadService(
            metadata,
            storage,
            limits.upload_expiry_seconds,
            # Any worker or node accepts an upload id another one issued.
            ids=UploadIds(derive_upload_key(_shared_secret(settings))),
        ),
        blobs=BlobService(metadata, storage, settings.delete_enabled),
        manifests=ManifestService(metadata, settings.delete_enabled, build_quotas(settings)),
        listing=ListingService(
            metadata, PageLimits(limits.page_size_default, limits.page_size_max)
        ),
        repositories=RepositoryService(SqlUsageStore(metadata), settings.delete_enabled),
        metadata=metadata,
        storage=storage,
        manifest_max_bytes=limits.manifest_max_bytes,
        gate=build_gate(settings, engine),
        header_max_bytes=limits.header_max_bytes,
        body_idle_timeout_seconds=limits.body_idle_timeout_seconds,
        # Both backends are local here; a network database (or object store) keeps every
        # lookup off the event loop.
        inline_point_reads=engine.dialect.name == "sqlite"
        and settings.storage.backend == "filesystem",
        accel_redirect=settings.storage.accel_redirect,
        readiness_timeout_seconds=settings.health.check_timeout_seconds,
        event_backlog=SqlEventStore(metadata).backlog if outbox is not None else None,
        manifest_pulled=SqlEventStore(metadata).pulled
        if outbox is not None and events.pull
        else None,
    )


def start_heartbeat(registry: Registry) -> liveness.Heartbeat | None:
    """Beat this process's row until ``stop()`` (services/liveness.py): its leases can then be
    taken over at once when it dies, wherever the survivor runs. Not on SQLite: every process
    sharing its file runs on one host, where the kernel says who is alive, so a beat would
    only cost a durable write per worker per second and a turn of the single writer lock."""
    metadata = registry.metadata
    assert isinstance(metadata, SqlMetadataStore)  # the only metadata backend
    if metadata.engine.dialect.name == "sqlite":
        return None
    heartbeat = liveness.Heartbeat(SqlPresence(metadata))
    heartbeat.start()
    return heartbeat


def start_checkpointer(registry: Registry) -> WalCheckpointer | None:
    """On a SQLite file, this process's thread that copies the write-ahead log into the
    database (metadata/wal_checkpointer.py), so that no request's commit has to."""
    metadata = registry.metadata
    assert isinstance(metadata, SqlMetadataStore)  # the only metadata backend
    if not metadata.file_backed_sqlite:
        return None
    checkpointer = WalCheckpointer(metadata)
    checkpointer.start()
    return checkpointer


def start_collection(
    settings: Settings, registry: Registry, writer: WriterThread | None = None
) -> tuple[Collector, JobLeases, liveness.Heartbeat | None]:
    """:func:`build_collector` and :func:`start_heartbeat` for a collection process. With a
    ``writer`` (the collector at idle priority), its write transactions run there, and so
    does the heartbeat start, so that the beating thread keeps normal priority too: an idle
    one could be kept off a CPU past cluster.node_timeout and the lease taken over."""
    collector, leases = build_collector(settings, registry, writer)
    if writer is None:
        return collector, leases, start_heartbeat(registry)
    return collector, leases, writer(lambda: start_heartbeat(registry))


def build_collector(
    settings: Settings, registry: Registry, writer: WriterThread | None = None
) -> tuple[Collector, JobLeases]:
    """The garbage collector over the registry's own stores, and the job leases it runs under.
    ``writer``: where its write transactions run (SqlGcStore), by default inline."""
    metadata = registry.metadata
    assert isinstance(metadata, SqlMetadataStore)  # the only metadata backend
    gc = settings.gc
    policy = ManifestPolicy(referrers=gc.referrers, untagged_age=gc.untagged_age)
    # The gate's own rules, as they are when each collection runs (the file may be reloaded).
    authorizer = registry.gate.authorizer
    assert isinstance(authorizer, PolicyAuthorizer | ReloadingPolicyAuthorizer)
    pace = default_pace(metadata._single_writer)
    pace = Pace(gc.batch_time or pace.batch_seconds, gc.max_duty or pace.max_duty)
    collector = Collector(
        SqlGcStore(metadata, pace) if writer is None else SqlGcStore(metadata, pace, writer),
        registry.storage,
        policy,
        registry.uploads.expire,
        retention=[
            RetentionRule(
                applies_to=functools.partial(matches_any, rule.repositories),
                keep_tag=functools.partial(matches_any, tuple(rule.keep_tags)),
                keep_last=rule.keep_last,
                remove_older_than=rule.remove_older_than,
            )
            for rule in gc.retention
        ],
        immutable=lambda repository: has_immutable_tags(authorizer.policy, repository),
    )
    return collector, SqlJobLeases(metadata)


def _my_turn_to_collect(leases: JobLeases, interval: float) -> bool:
    """Whether this worker starts this interval's collection: the first of all workers and
    nodes to ask within it does (the others' collector processes would only find it busy)."""
    now = time.time()
    return leases.acquire(GC_TURN_LEASE, new_holder(), now, now + interval * 0.8)


async def _collect_garbage(settings: Settings, registry: Registry) -> None:
    """Every ``gc.interval`` (with jitter, so the workers do not all try at once), one
    collection, if no other worker or node is running one."""
    gc = settings.gc
    metadata = registry.metadata
    assert isinstance(metadata, SqlMetadataStore)  # the only metadata backend
    leases = SqlJobLeases(metadata)
    while True:
        await asyncio.sleep(gc.interval * random.uniform(0.9, 1.1))
        try:
            if not await in_thread(_my_turn_to_collect, leases, gc.interval):
                continue
        except Exception:
            log.exception("garbage collection not started: its turn could not be taken")
            continue
        # In a child process, not a thread of this worker: see gc_child.py.
        child = ChildCollection(settings)
        try:
            # Cancellable at once (the thread ends when the child does: stop() below).
            report = await asyncio.to_thread(child.result)
        except CollectorBusy:
            continue
        except LeaseLost:
            log.warning("garbage collection stopped: its lease ran out")
            continue
        except CollectionFailed as failure:
            log.error("garbage collection failed: %s", failure)
            continue
        except Exception:
            log.exception("garbage collection failed")
            continue
        finally:
            child.stop()  # at once if this task is cancelled (the worker stops)
        if report.items or report.uploads_expired:
            log.info(
                "garbage collection would free" if report.dry_run else "garbage collected",
                extra={
                    "counts": {kind: t.count for kind, t in report.totals.items()},
                    "bytes": report.bytes_freed,
                    "full": report.full,
                    "seconds": round(report.seconds, 3),
                },
            )


async def _publish_metrics(publish: Callable[[], None]) -> None:
    """Each worker's figures gathered off the event loop (storage calls, the pool's count) go
    to the metrics once a second, whether or not this worker serves the next scrape."""
    while True:
        await asyncio.sleep(METRICS_PUBLISH_SECONDS)
        try:
            publish()
        except Exception:
            log.exception("metrics not published")


async def _sweep_expired_uploads(registry: Registry) -> None:
    while True:
        try:
            removed = await in_thread(registry.uploads.expire)
            if removed:
                metrics.UPLOAD_SESSIONS.labels("abandoned").inc(removed)
                log.info("expired upload sessions", extra={"count": removed})
        except Exception:
            log.exception("upload expiry sweep failed")
        await asyncio.sleep(EXPIRY_SWEEP_SECONDS)


# --- events and audit (issue 12) ---
def build_deliverer(settings: Settings, store: SqlEventStore) -> Deliverer:
    """The webhook deliverer for ``events.endpoints``."""
    events = settings.events
    return Deliverer(
        store,
        [
            Endpoint(
                key=e.key,
                url=e.url,
                repositories=e.repositories,
                types=frozenset(e.types),
                secret=e.secret.get_secret_value() if e.secret else None,
                timeout=e.timeout,
                headers=dict(e.headers),
                allow_networks=networks(e.allow_networks),
            )
            for e in events.endpoints
        ],
        allow_private=events.allow_private_networks,
        backoff_initial=events.backoff_initial,
        backoff_max=events.backoff_max,
        max_attempts=events.max_attempts,
        count=lambda outcome: metrics.WEBHOOK_DELIVERIES.labels(outcome).inc(),
    )


def _background_worker(settings: Settings, registry: Registry) -> Coroutine[Any, Any, None]:
    """Event delivery and the pruning of old events and audit entries, on one worker at a time."""
    metadata = registry.metadata
    assert isinstance(metadata, SqlMetadataStore)
    store = SqlEventStore(metadata)
    audit_log = SqlAuditLog(metadata)

    def housekeeping() -> None:
        now = time.time()
        if settings.events.recording:
            store.prune(now - settings.events.retention)
        if settings.audit.enabled:
            audit_log.prune(now - settings.audit.retention)

    # With events recorded but no endpoint (events.enabled), the deliverer still marks them
    # dispatched, so that they are pruned after events.retention.
    deliverer = build_deliverer(settings, store) if settings.events.recording else None
    return events_worker.serve(deliverer, SqlJobLeases(metadata), housekeeping)


async def _write_audit(trail: AuditTrail, audit_log: SqlAuditLog) -> None:
    """Each worker writes its audit entries once a second (see moorage.audit.trail)."""
    while True:
        await asyncio.sleep(AUDIT_FLUSH_SECONDS)
        await in_thread(_flush_audit, trail, audit_log)


def _flush_audit(trail: AuditTrail, audit_log: SqlAuditLog) -> None:
    entries, dropped = trail.drain()
    if dropped:
        log.warning("audit entries dropped", extra={"count": dropped})
    try:
        audit_log.write(entries)
    except Exception:
        log.exception("audit entries not written", extra={"count": len(entries)})


# --- end events and audit ---


# --- web UI (issue 13) ---
def _session_key(settings: Settings) -> bytes:
    """The UI's cookie key: from ``ui.session_secret``, else from the token signing key that
    every worker and node already shares (created on first start like the token service's)."""
    secret = settings.ui.session_secret
    if secret is not None:
        return derive_key(secret.get_secret_value().encode())
    return derive_key(_shared_secret(settings))


def _shared_secret(settings: Settings) -> bytes:
    """The token signing key's bytes (created on first start when none is configured): every
    worker, and every node of a cluster (docs/deploy/cluster.md), has the same, so keys derived
    from it are shared without a secret of their own to distribute."""
    token = settings.auth.token
    key = load_or_create(token.key_file, token.cert_file, settings.storage.data_dir)
    return key.private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def build_web(settings: Settings, registry: Registry) -> WebContext:
    """The UI's services: browsing over the same stores, and the API's own gate."""
    assert isinstance(registry.metadata, SqlMetadataStore)
    gate = registry.gate
    tokens = next(
        (a.store for a in gate.authenticators if isinstance(a, ApiTokenAuthenticator)), None
    )
    ui = settings.ui
    return WebContext(
        browse=BrowseService(
            SqlBrowseStore(registry.metadata), registry.manifests, registry.listing, registry.blobs
        ),
        manifests=registry.manifests,
        # The API's own repository service and the quotas pushes are checked against, so the
        # UI shows and deletes exactly as `moorage usage` and the API do.
        usage=UsageService(registry.repositories.store, registry.manifests.quotas),
        repositories=registry.repositories,
        gate=gate,
        tokens=tokens,
        signer=SessionSigner(
            _session_key(settings) if gate.enabled else b"auth off: no sessions",
            ui.session_seconds,
            gate.credential_of,
            tokens.is_live if tokens is not None else lambda _: False,
        ),
        throttle=SignInThrottle(
            ui.sign_in_failures_per_user,
            ui.sign_in_failures_per_address,
            ui.sign_in_window_seconds,
        ),
        page_size=ui.page_size,
    )


def mount_ui(app: Starlette, settings: Settings, registry: Registry) -> None:
    app.mount("/ui", build_ui(build_web(settings, registry)))
    app.add_route("/", to_ui, methods=["GET", "HEAD"])
    app.add_route("/ui", to_ui, methods=["GET", "HEAD"])


# --- end web UI ---


def create_app(settings: Settings | None = None) -> Starlette:
    """The ASGI app for ``settings`` (default: from the config file and environment)."""
    settings = settings or load_settings()
    configure_logging(settings.log.level, settings.log.format)
    # Here, in each worker, whether granian forked or spawned it: big pushes reuse their
    # buffers instead of faulting fresh memory in for every MiB (moorage/heap.py).
    keep_freed_buffers()
    storage_figures = StorageFigures(settings.storage.backend) if settings.metrics.enabled else None
    transaction_figures = (
        PendingObservations(metrics.DB_TRANSACTION_SECONDS, metrics.TRANSACTION_BUCKETS)
        if settings.metrics.enabled
        else None
    )
    registry = build_registry(settings, storage_figures, transaction_figures)
    assert isinstance(registry.metadata, SqlMetadataStore)
    audit_log = SqlAuditLog(registry.metadata)

    recorders: list[Recorder] = []
    endpoint = None
    publish_gathered: Callable[[], None] | None = None
    requests_metrics = RequestMetrics() if settings.metrics.enabled else None
    if (
        requests_metrics is not None
        and storage_figures is not None
        and transaction_figures is not None
    ):
        recorders.append(requests_metrics)
        inventory = InventoryCollector(
            registry.metadata.inventory, settings.metrics.inventory_refresh_seconds
        )
        database = settings.database
        sample_pool = pool_sampler(
            registry.metadata.engine, database.pool_size + database.max_overflow
        )

        def publish_gathered() -> None:
            storage_figures.flush()
            transaction_figures.flush()
            sample_pool()

        def publish_all() -> None:
            requests_metrics.flush()
            publish_gathered()

        token = settings.metrics.token
        endpoint = MetricsEndpoint(
            exposition([inventory]), token.get_secret_value() if token else None, publish_all
        )
    requests_log = request_log.RequestLog(settings.log.format) if request_log.enabled() else None
    if requests_log is not None:
        recorders.append(requests_log)
    trail = AuditTrail() if settings.audit.enabled else None
    if trail is not None:
        recorders.append(AuditRecorder(trail))

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # In each worker process (after the fork): its own row, beaten from its own thread
        # (on a database other processes may share from other hosts).
        heartbeat = await asyncio.to_thread(start_heartbeat, registry)
        checkpointer = start_checkpointer(registry)
        tasks = [asyncio.create_task(_sweep_expired_uploads(registry))]
        if publish_gathered is not None:
            tasks.append(asyncio.create_task(_publish_metrics(publish_gathered)))
        if settings.gc.interval > 0:
            tasks.append(asyncio.create_task(_collect_garbage(settings, registry)))
        if settings.events.recording or settings.audit.enabled:
            tasks.append(asyncio.create_task(_background_worker(settings, registry)))
        if trail is not None:
            tasks.append(asyncio.create_task(_write_audit(trail, audit_log)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for recorder in (requests_metrics, requests_log):
                if recorder is not None:
                    recorder.flush()
            if trail is not None:
                _flush_audit(trail, audit_log)
            if checkpointer is not None:
                await asyncio.to_thread(checkpointer.stop)
            # Last: the leases this process held are taken over at once from here on.
            if heartbeat is not None:
                await asyncio.to_thread(heartbeat.stop)

    app = build_app(registry, lifespan, recorders, endpoint)
    if settings.ui.enabled:
        mount_ui(app, settings, registry)
    # Behind a TLS-terminating proxy (docs/deploy/nginx.md), believe its X-Forwarded-* headers.
    if settings.proxy.trusted:
        app.add_middleware(TrustedProxyHeaders, trusted=settings.proxy.trusted)
    return app
