"""Celery side of the ebb comparison harness (bench/cmd/compare).

The Celery app and its one no-op task. The worker is started by the Go
harness as `python3 -m celery -A bench_tasks worker ...` from this directory;
settings come from environment variables so the harness controls them.
"""

import os
import time

from celery import Celery, signals

app = Celery("ebb_bench", broker=os.environ.get("EBB_BENCH_CELERY_BROKER", "redis://127.0.0.1:6379/12"))
app.conf.update(
    task_default_queue=os.environ.get("EBB_BENCH_CELERY_QUEUE", "ebb-bench"),
    # Acknowledge after the task ran, as ebb, asynq and River do: otherwise a
    # crashed worker loses what it had taken, and the comparison would set
    # at-least-once against at-most-once delivery.
    task_acks_late=True,
    # No result backend: the task has no result, and ebb's "succeeded" record
    # corresponds to the acknowledgement here.
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("EBB_BENCH_CELERY_PREFETCH", "4")),
    broker_connection_retry_on_startup=True,
    accept_content=["json"],
    task_serializer="json",
    worker_hijack_root_logger=False,
)

_LAT_DIR = os.environ.get("EBB_BENCH_CELERY_LAT_DIR", "")
_lat_file = None


@app.task(name="ebb.bench.noop")
def noop(enqueued_at=None):
    # A steady-workload task carries its enqueue time (seconds since the
    # epoch); its start is recorded per pool process, in a file of its own so
    # the processes never share a writer. Burn-down tasks carry nothing.
    if enqueued_at is None or not _LAT_DIR:
        return None
    started = time.time()
    global _lat_file
    if _lat_file is None:
        _lat_file = open(os.path.join(_LAT_DIR, "lat-%d.txt" % os.getpid()), "a", buffering=1)
    _lat_file.write("%d\n" % int((started - enqueued_at) * 1e6))
    return None


@signals.worker_ready.connect
def _ready(sender=None, **kwargs):
    # The harness starts the burn-down clock here: a Python interpreter and
    # the prefork pool take a second or two to come up, which is not queue work.
    path = os.environ.get("EBB_BENCH_CELERY_READY_FILE")
    if path:
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write("%.6f\n" % time.time())
        os.rename(tmp, path)
