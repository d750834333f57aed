"""The control plane's Celery app: the conductor worker, beat, and every sender in the API process."""

import gc
import logging
import os

from celery import Celery, signals

import compute_tasks.kombu_redis  # noqa: F401 - keeps workers alive through a Redis restart

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")

# Seconds between two runs of the reaper (leases, lost scheduling requests).
REAPER_INTERVAL = float(os.environ.get("REAPER_INTERVAL") or 15)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.beat_schedule = {
    "reap-expired-tasks": {
        "task": "conductor.reap_expired_tasks",
        "schedule": REAPER_INTERVAL,
        "options": {"expires": REAPER_INTERVAL},
    },
    "sweep-volumes": {
        "task": "conductor.sweep_volumes",
        "schedule": REAPER_INTERVAL,
        "options": {"expires": REAPER_INTERVAL},
    },
    "advance-moves": {
        "task": "conductor.advance_moves",
        "schedule": REAPER_INTERVAL,
        "options": {"expires": REAPER_INTERVAL},
    },
    "purge-console-tokens": {
        "task": "conductor.purge_console_tokens",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # The admins' host graphs: a sample of every host a minute (portal.services.host_graphs).
    "record-host-samples": {
        "task": "conductor.record_host_samples",
        "schedule": 60.0,
        "options": {"expires": 60},
    },
    # Only keeps the table small: failures older than the throttle's window no longer count anyway.
    "purge-failed-sign-ins": {
        "task": "conductor.purge_failed_sign_ins",
        "schedule": 300.0,
        "options": {"expires": 300},
    },
}
app.autodiscover_tasks(["portal.conductor"])
app.set_default()


# A worker waits out a broker restart (about 40 s) before it gives up on a message it sends: a report
# or a build that never leaves costs an instance its lease. It retries the publish, and getting a
# connection to publish on (kombu gives up on that after 4 s otherwise). The API keeps Celery's short
# defaults and answers at once; the reaper sends a lost scheduling request again.
WORKER_PUBLISH_RETRY_POLICY = {"max_retries": 45, "interval_start": 0, "interval_step": 0.5, "interval_max": 1.0}


@signals.worker_init.connect
def _keep_database_connections(sender=None, **_):
    """Connections live as ``CONN_MAX_AGE`` and ``CONN_HEALTH_CHECKS`` say, across tasks, as across requests.

    Celery's Django fixup closes every connection before and after each task, so each task (every
    heartbeat among them) paid for a new PostgreSQL backend. Its receivers are swapped here, once the
    fixup has installed them for this worker, for Django's own ``close_old_connections``: a connection
    past its age, or one left unusable by an error, is closed; a broken one is found by the health check
    when the next task uses it, and replaced. A forked child still drops what it inherited (the fixup's
    ``worker_process_init`` stays)."""
    for fixup in getattr(app, "_fixups", ()):
        worker_fixup = getattr(fixup, "_worker_fixup", None)
        if worker_fixup is None or getattr(worker_fixup, "worker", None) is not sender:
            continue
        signals.task_prerun.disconnect(worker_fixup.on_task_prerun)
        signals.task_postrun.disconnect(worker_fixup.on_task_postrun)
        signals.task_prerun.connect(_close_old_connections, weak=False)
        signals.task_postrun.connect(_close_old_connections, weak=False)


def _close_old_connections(sender=None, **_):
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # an eager task shares its caller's connection and transaction
    from django.db import close_old_connections

    close_old_connections()


@signals.worker_process_init.connect  # each child of a prefork pool, after the fork
@signals.worker_ready.connect  # the worker itself, for the solo and thread pools
def _freeze_what_was_imported(**_):
    """Move everything imported so far (Django, Celery, the project: never garbage) out of the garbage
    collector's sight: a full collection no longer walks it, and a forked child's copy of it stays shared
    with the parent instead of being written to by the collector."""
    gc.collect()
    gc.freeze()


@signals.worker_init.connect
def _patient_publishing(**_):
    app.conf.task_publish_retry_policy = WORKER_PUBLISH_RETRY_POLICY
    app.conf.broker_transport_options = {**(app.conf.broker_transport_options or {}), "connect_retries_timeout": 40}


# Hosts beat every few seconds and beat sends the periodic jobs every few more; a line for each would
# drown everything else in the log. The jobs log what they do when they do something.
_ROUTINE_TASKS = ("conductor.heartbeat", *(entry["task"] for entry in app.conf.beat_schedule.values()))


class _QuietHeartbeats(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:  # a failure is never routine
            return True
        message = record.getMessage()
        return not any(task in message for task in _ROUTINE_TASKS)


@signals.after_setup_logger.connect
def _quiet_heartbeats(**_):
    for name in ("celery.app.trace", "celery.worker.strategy", "celery.beat"):
        logging.getLogger(name).addFilter(_QuietHeartbeats())
