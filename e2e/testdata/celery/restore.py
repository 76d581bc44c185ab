"""Runs Kombu's own restore of unacknowledged messages older than the
visibility timeout: the scan every Celery worker runs when it starts and
about every 100 s after. The kill test runs it at a chosen moment instead
of waiting up to 100 s for a worker's next scan."""

from fleet_tasks import app

with app.connection_for_write() as conn:
    conn.default_channel.qos.restore_visible()
