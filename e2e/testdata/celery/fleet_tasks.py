"""The Celery app of ebb's Celery-fleet tests (e2e/celery_test.go).

Its settings are what docs/celery.md recommends for a fleet ebb scales:
acks_late, prefetch 1, events on. The broker, key prefix, queue and
visibility timeout come from the environment the test sets.
"""

import os
import time

import redis
from celery import Celery

BROKER = os.environ["EBB_CELERY_BROKER"]
PREFIX = os.environ.get("EBB_CELERY_PREFIX", "")
QUEUE = os.environ.get("EBB_CELERY_QUEUE", "celery")

# EBB_CELERY_UNSAFE=1 gives Celery's defaults instead (acks on start,
# prefetch 4), which ebb must warn about.
SAFE = os.environ.get("EBB_CELERY_UNSAFE", "") != "1"

app = Celery("fleet_tasks", broker=BROKER, backend=BROKER)
app.conf.update(
    task_default_queue=QUEUE,
    task_acks_late=SAFE,
    worker_prefetch_multiplier=1 if SAFE else 4,
    broker_transport_options={
        "global_keyprefix": PREFIX,
        "visibility_timeout": float(os.environ.get("EBB_CELERY_VISIBILITY", "3600")),
    },
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    worker_hijack_root_logger=False,
)

_r = redis.Redis.from_url(BROKER)


@app.task(name="e2e.sleep", bind=True)
def sleep(self, seconds, marker=""):
    # Each run is recorded as it starts and when it ends, under the test's
    # key prefix: a task run twice shows twice in "runs", one interrupted
    # shows in "runs" without "done".
    _r.rpush(PREFIX + "e2e:runs", "%s %s" % (self.request.id, self.request.hostname))
    time.sleep(seconds)
    _r.rpush(PREFIX + "e2e:done", self.request.id)
    return {"slept": seconds, "marker": marker}
