"""Every Prometheus instrument Moorage updates, declared once (meanings: docs/operations.md).

Labels are bounded on purpose: a route *template* (never a path or a repository name, which
would make one series per repository), a method, a status class. Under ``moorage serve`` the
values live in per-process files (see :mod:`moorage.telemetry.exposition`), so every worker's
figures add up in one scrape.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# From a manifest GET (~1 ms) to a large layer upload (minutes).
REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
)  # fmt: skip
# A write transaction: well under a millisecond, unless it waits for the writer lock or a disk.
TRANSACTION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
)  # fmt: skip
# A store operation: a local file call (tens of microseconds) to an S3 request that retried.
STORAGE_BUCKETS = (
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0,
)  # fmt: skip

REQUESTS = Counter(
    "moorage_http_requests",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx...).",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "moorage_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
    buckets=REQUEST_BUCKETS,
)
BLOB_BYTES_RECEIVED = Counter(
    "moorage_blob_received_bytes", "Blob bytes received in upload request bodies."
)
BLOB_BYTES_SENT = Counter(
    "moorage_blob_sent_bytes", "Blob bytes sent in blob GET responses (not redirected ones)."
)
UPLOAD_SESSIONS = Counter(
    "moorage_upload_sessions",
    "Upload sessions by event: started, completed, cancelled, abandoned (expired unfinished).",
    ["event"],
)
AUTHENTICATIONS = Counter(
    "moorage_authentications",
    "Credentials checked, by outcome: success, wrong_credentials, token_refused.",
    ["outcome"],
)
AUTHORIZATION_REFUSALS = Counter(
    "moorage_authorization_refusals",
    "Requests refused by the access policy, by reason: denied (403), insufficient_scope "
    "(401, the token lacks an access) or authentication_required (401, anonymous).",
    ["reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "moorage_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, failed (retried later), blocked (the "
    "endpoint resolved to an address not allowed; retried later), gave_up (last attempt).",
    ["outcome"],
)
DB_TRANSACTION_SECONDS = Histogram(
    "moorage_db_transaction_duration_seconds",
    "Metadata write transactions, from asking for the writer to commit or rollback.",
    buckets=TRANSACTION_BUCKETS,
)
STORAGE_SECONDS = Histogram(
    "moorage_storage_operation_duration_seconds",
    "Blob store calls by backend (filesystem, s3) and operation (stat, read, write, "
    "commit_upload...): on s3, the S3 request latency, obstore's retries included.",
    ["backend", "operation"],
    buckets=STORAGE_BUCKETS,
)
STORAGE_ERRORS = Counter(
    "moorage_storage_errors",
    "Blob store calls that failed (unreachable, denied, throttled, I/O errors; not a missing "
    "blob), by backend and operation.",
    ["backend", "operation"],
)
STORAGE_RETRIES = Counter(
    "moorage_storage_retries",
    "Retries the S3 client made for calls that failed in the end, by backend and operation.",
    ["backend", "operation"],
)
# Gauges are set by each worker once a second; a scrape adds up the live workers' values.
DB_POOL_IN_USE = Gauge(
    "moorage_db_pool_connections_in_use",
    "Database connections checked out of the pools (a request or job holds them).",
    multiprocess_mode="livesum",
)
DB_POOL_MAX = Gauge(
    "moorage_db_pool_connections_max",
    "Database connections the pools may hold at most (pool_size + max_overflow per worker).",
    multiprocess_mode="livesum",
)
