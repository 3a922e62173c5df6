"""Prometheus metrics of the truck link. One registry per process (the default); the ingest
command serves it on ``INGEST_METRICS_PORT``, the web process on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECEIVED = Counter("haulmind_ingest_received_total", "Truck messages received.", ["channel"])
STORED = Counter(
    "haulmind_ingest_stored_total", "History rows written (new, not duplicates).", ["table"]
)
DUPLICATES = Counter(
    "haulmind_ingest_duplicates_total", "Rows skipped because they were already stored."
)
REJECTED = Counter(
    "haulmind_ingest_rejected_total", "Truck messages refused, by reason.", ["channel", "reason"]
)
LATE = Counter("haulmind_ingest_late_total", "Messages stored but marked late (back-filled).")
LAG = Histogram(
    "haulmind_ingest_lag_seconds",
    "From the envelope Timestamp to the commit of the batch holding it (not late messages).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
BATCH_SECONDS = Histogram(
    "haulmind_ingest_batch_seconds",
    "Time to validate, store and commit one batch.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "haulmind_ingest_batch_messages",
    "Messages per committed batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000),
)
QUEUE_DEPTH = Gauge(
    "haulmind_ingest_queue_depth", "Messages received and not yet committed (this replica)."
)
STORE_RETRIES = Counter(
    "haulmind_ingest_store_retries_total", "Batches retried because the database was unavailable."
)
