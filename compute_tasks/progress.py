"""What a host tells the control plane while long work goes on: a build's step and download, a
migration's figures. Each is sent from the task's own context (so signed as this host); one that cannot
be sent is logged, and the work goes on."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from typing import Protocol

from compute_tasks.drivers.base import MigrationStats
from compute_tasks.rpc import BuildProgress, BuildRequest, MigrationProgress

log = logging.getLogger(__name__)


class ProgressReporter(Protocol):
    def build_progress(self, progress: BuildProgress) -> None: ...

    def migration_progress(self, progress: MigrationProgress) -> None: ...


class BuildSteps:
    """Tells the control plane which step of a build this host is in, and how much of the image it has
    fetched, once the build has taken longer than ``quiet`` seconds: a build that is done sooner says
    nothing (its end is its report, and the boot path pays for no extra messages). After that a new step
    goes out at once and a percent at most once every ``interval`` seconds, when it grew by ``min_step``
    points or reached 100; what is current when the quiet time ends goes out then, from a timer. Sent
    in the context of the build's own task (so signed as this host); a report that cannot be sent is
    logged and the build goes on."""

    def __init__(
        self,
        reporter: ProgressReporter,
        request: BuildRequest,
        host: str,
        *,
        quiet: float = 1.0,
        interval: float = 1.0,
        min_step: int = 5,
    ) -> None:
        self._reporter = reporter
        self._request = request
        self._host = host
        self._interval = interval
        self._min_step = min_step
        self._step = ""
        self._percent = 0
        self._sent: tuple[str, int] | None = None
        self._sent_at = 0.0
        self._lock = threading.Lock()
        self._speaking = quiet <= 0
        self._done = False
        self._timer: threading.Timer | None = None
        if not self._speaking:
            self._timer = threading.Timer(quiet, contextvars.copy_context().run, args=(self._quiet_over,))
            self._timer.daemon = True
            self._timer.start()

    def begin(self, step: str) -> None:
        with self._lock:
            self._step, self._percent = step, 0
            if self._speaking:
                self._send()

    def downloaded(self, received: int, total: int) -> None:
        percent = min(100, 100 * received // total) if total > 0 else 100
        with self._lock:
            last = self._sent[1] if self._sent and self._sent[0] == self._step else -1
            self._percent = percent
            if not self._speaking or percent == last:
                return
            if percent < 100 and (percent - last < self._min_step or time.monotonic() - self._sent_at < self._interval):
                return
            self._send()

    def finish(self) -> None:
        """The build is over (built or failed): nothing more goes out."""
        with self._lock:
            self._done, self._speaking = True, False
        if self._timer is not None:
            self._timer.cancel()

    def _quiet_over(self) -> None:
        with self._lock:
            if self._done:
                return
            self._speaking = True
            if self._step:
                self._send()

    def _send(self) -> None:
        state = (self._step, self._percent)
        if state == self._sent:
            return
        self._sent, self._sent_at = state, time.monotonic()
        try:
            self._reporter.build_progress(
                BuildProgress(
                    instance_uuid=self._request.instance_uuid,
                    host=self._host,
                    request_id=self._request.request_id,
                    step=self._step,
                    percent=self._percent,
                )
            )
        except Exception:
            log.exception("sending the progress of the build of %s failed", self._request.instance_uuid)


class MigrationProgressSender:
    """Sends the newest progress of a migration about once a second from a thread of its own, in the
    context (the host identity) of the task that made it."""

    def __init__(self, reporter: ProgressReporter, migration_id: int, host: str, interval: float = 1.0) -> None:
        self._reporter = reporter
        self._migration_id = migration_id
        self._host = host
        self._interval = interval
        self._latest: MigrationStats | None = None
        self._sent: MigrationStats | None = None
        self._changed = threading.Event()
        self._stopped = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name=f"migration-{migration_id}-progress", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def update(self, stats: MigrationStats) -> None:
        self._latest = stats
        self._changed.set()

    def stop(self) -> None:
        """Stop, and send the newest figures if they were not sent yet (a short migration may end before
        the thread's first round)."""
        self._stopped.set()
        self._changed.set()
        self._thread.join(timeout=self._interval * 2)
        if self._latest is not None and self._latest != self._sent:
            self._send(self._latest)

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._changed.wait(self._interval)
            self._changed.clear()
            stats = self._latest
            if stats is None or stats == self._sent or self._stopped.is_set():
                continue
            self._send(stats)
            self._stopped.wait(self._interval)  # at most one message an interval, however often it changes

    def _send(self, stats: MigrationStats) -> None:
        if send_migration_progress(self._reporter, self._migration_id, self._host, stats):
            self._sent = stats


def send_migration_progress(reporter: ProgressReporter, migration_id: int, host: str, stats: MigrationStats) -> bool:
    try:
        reporter.migration_progress(
            MigrationProgress(
                migration_id=migration_id,
                host=host,
                memory_total_bytes=stats.memory_total,
                memory_processed_bytes=stats.memory_processed,
                memory_remaining_bytes=stats.memory_remaining,
                disk_total_bytes=stats.disk_total,
                disk_processed_bytes=stats.disk_processed,
                disk_remaining_bytes=stats.disk_remaining,
            )
        )
    except Exception:
        log.exception("sending the progress of migration %s failed", migration_id)
        return False
    return True
