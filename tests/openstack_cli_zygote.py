"""Runs the tests' ``openstack`` commands without paying for Python's start and the CLI's imports every time.

Started once with the CLI's virtualenv (``tests/openstack_cli.py`` does), it imports the CLI, then forks a
child for each command. The child takes the command's environment, directory and output files and calls
the CLI's own entry point (``openstackclient.shell.main``, what the ``openstack`` script calls) with its
arguments; its exit status is the command's. Each command is still a process of its own: only the imports
are shared, made before any command ran.

Requests and answers are JSON lines on stdin and stdout, one command at a time.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

# The CLI, and what most commands load on their own first: loaded once here instead.
import keystoneauth1.identity.generic  # noqa: F401
import openstack.connection  # noqa: F401
import openstackclient.compute.v2.server  # noqa: F401
import openstackclient.identity.v3.project  # noqa: F401
import openstackclient.image.v2.image  # noqa: F401
import openstackclient.network.v2.network  # noqa: F401
from openstackclient import shell


def _child(request: dict) -> None:
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.argv = ["openstack", *request["argv"]]
        code = shell.main(request["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, then status 1
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code or 0)


def _run(request: dict) -> dict:
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _child(request)
    deadline = time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return {"rc": os.waitstatus_to_exitcode(status), "timed_out": False}
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"rc": -signal.SIGKILL, "timed_out": True}
        time.sleep(0.005)


def main() -> None:
    for line in sys.stdin:
        answer = _run(json.loads(line))
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
