"""The conductor's log keeps what matters: routine beats and periodic jobs are quiet, failures never."""

import logging

import pytest

from portal.celery import _QuietHeartbeats

pytestmark = pytest.mark.unit


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("celery.app.trace", level, __file__, 1, message, None, None)


@pytest.mark.parametrize(
    "message",
    [
        "Task conductor.heartbeat[3f1] succeeded in 0.01s: None",
        "Task conductor.sweep_volumes[7a2] received",
        "Task conductor.reap_expired_tasks[9c4] succeeded in 0.003s: 0",
        "Scheduler: Sending due task purge-console-tokens (conductor.purge_console_tokens)",
    ],
)
def test_routine_lines_are_dropped(message):
    assert not _QuietHeartbeats().filter(record(logging.INFO, message))


def test_other_tasks_and_every_failure_are_kept():
    quiet = _QuietHeartbeats()
    assert quiet.filter(record(logging.INFO, "Task conductor.schedule_and_build[1] received"))
    assert quiet.filter(record(logging.ERROR, "Task conductor.sweep_volumes[7a2] raised unexpected: OperationalError"))
    assert quiet.filter(record(logging.WARNING, "Task conductor.heartbeat[3f1] retry"))
