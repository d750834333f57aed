"""A PostgreSQL server of the benchmark's own, so that its CPU can be counted with the cloud's.

The machine's shared server also serves other work, and a backend that ends (a connection closed after
each task) takes its CPU with it; a server started for one run counts every backend it ever had: the
postmaster's children's time (``cutime``/``cstime``) holds those that ended.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(argv: list[str]) -> list[str]:
    # The server refuses to run as root; a machine where the benchmark runs as another user runs it as is.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """``initdb`` into ``directory`` and serve it on a free loopback port, in a process group of its own."""

    def __init__(self, directory: Path, port: int):
        self.directory = directory
        self.port = port
        self.process: subprocess.Popen | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, log: Path) -> None:
        self.directory.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.directory), "-U", "postgres", "--auth=trust"]),
            check=True,
            capture_output=True,
        )
        options = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.directory}"]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                _as_postgres([str(PG_BIN / "postgres"), "-D", str(self.directory), "-p", str(self.port), *options]),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 2)  # SIGINT: PostgreSQL's fast shutdown
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
