"""The cloud's processes on one machine under supervisord: a process that dies is started again, with a
growing delay when it keeps dying at once, and every other process keeps serving.

The processes are the lines of the ``Procfile`` (a command per name, with ``${VARIABLE}`` expanded by the
shell). The compute line is run once per hypervisor host, each with its own environment. Used by
``scripts/demo.py`` and by the supervision test; no Django here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
import xmlrpc.client
from dataclasses import dataclass, field
from pathlib import Path

from supervisor.xmlrpc import SupervisorTransport

ROOT = Path(__file__).resolve().parents[1]
SUPERVISORD = ROOT / ".venv" / "bin" / "supervisord"

# A compute host holds none of the control plane's settings or secrets (docs/architecture.md).
CONTROL_PLANE_ONLY = ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DJANGO_SECRET_KEY", "CONSOLEAUTH_SECRET",
                      "CLOUD_SIGNING_KEY")  # fmt: skip
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Program:
    """One supervised process: a Procfile command and what its environment adds to the supervisor's."""

    name: str
    command: str
    environment: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    """How a process that dies is started again. A process that exits within ``start_seconds`` of being
    started failed to start: it is tried ``start_retries`` more times, waiting 1 s longer before each
    (supervisord's backoff), then left stopped (FATAL) so a broken setting does not spin. One that dies
    later is started again at once."""

    start_seconds: int = 5
    start_retries: int = 10
    stop_wait_seconds: int = 30


def read_procfile(path: Path) -> dict[str, str]:
    programs = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not _NAME_RE.match(name.strip()) or not command.strip():
            raise ValueError(f"{path}:{number}: expected 'name: command'")
        programs[name.strip()] = command.strip()
    return programs


def programs_for(procfile: Path, compute_hosts: dict[str, dict[str, str]]) -> list[Program]:
    """The Procfile's programs, with its ``compute`` line once per host in ``compute_hosts`` (host name →
    that worker's own settings); one host keeps the name ``compute``."""
    programs = []
    for name, command in read_procfile(procfile).items():
        if name != "compute":
            programs.append(Program(name, command))
            continue
        hidden = dict.fromkeys(CONTROL_PLANE_ONLY, "")
        for host, settings in compute_hosts.items():
            program = "compute" if len(compute_hosts) == 1 else f"compute-{host}"
            programs.append(Program(program, command, {**hidden, "COMPUTE_HOST": host, **settings}))
    return programs


def _value(text: str) -> str:
    """A value in supervisord's configuration: quoted, with its ``%`` escaped from string expansion."""
    if any(char in text for char in '"\n\r\\'):
        raise ValueError(f"cannot pass {text!r} through supervisord's configuration")
    return '"' + text.replace("%", "%%") + '"'


def supervisord_config(programs: list[Program], directory: Path, policy: Policy = Policy()) -> str:
    """supervisord's configuration: in the foreground, its own log also on standard output, each program's
    output in ``<directory>/<name>.log``, controlled through a unix socket only this user can open."""
    lines = [
        "[supervisord]",
        "nodaemon = true",
        # In the foreground supervisord also writes its log to standard output.
        f"logfile = {directory / 'supervisord.log'}",
        f"pidfile = {directory / 'supervisord.pid'}",
        f"childlogdir = {directory}",
        "",
        "[unix_http_server]",
        f"file = {directory / 'supervisor.sock'}",
        "chmod = 0700",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        "[supervisorctl]",
        f"serverurl = unix://{directory / 'supervisor.sock'}",
    ]
    for program in programs:
        if not _NAME_RE.match(program.name):
            raise ValueError(f"{program.name!r} is not a program name")
        command = "/bin/sh -c " + shlex.quote("exec " + program.command)
        lines += [
            "",
            f"[program:{program.name}]",
            f"command = {command.replace('%', '%%')}",
            f"directory = {ROOT}",
            "autostart = true",
            "autorestart = true",
            f"startsecs = {policy.start_seconds}",
            f"startretries = {policy.start_retries}",
            # Celery's pool children and gunicorn's workers go with their parent, never orphaned.
            "stopasgroup = true",
            "killasgroup = true",
            f"stopwaitsecs = {policy.stop_wait_seconds}",
            "redirect_stderr = true",
            f"stdout_logfile = {directory / (program.name + '.log')}",
            "stdout_logfile_maxbytes = 10MB",
            "stdout_logfile_backups = 2",
        ]
        if program.environment:
            lines.append("environment = " + ",".join(f"{k}={_value(v)}" for k, v in program.environment.items()))
    return "\n".join(lines) + "\n"


class Supervisor:
    """A supervisord running ``programs`` in the foreground of a child process of ours."""

    def __init__(self, programs: list[Program], directory: Path, env: dict[str, str], policy: Policy = Policy()):
        self.directory = directory
        self.programs = programs
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config = directory / "supervisord.conf"
        self.config.touch(mode=0o600)
        self.config.write_text(supervisord_config(programs, directory, policy))
        self.env = env
        self.popen: subprocess.Popen | None = None

    def start(self, stdout=None) -> Supervisor:
        self.popen = subprocess.Popen(
            [str(SUPERVISORD), "-c", str(self.config)],
            cwd=ROOT,
            env=self.env,
            stdout=stdout,
            stderr=subprocess.STDOUT if stdout is not None else None,
            start_new_session=True,  # Ctrl-C reaches the demo first; it stops the VMs before the processes
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.rpc.getState()
                return self
            except OSError:
                pass
            if self.popen.poll() is not None:
                raise RuntimeError(f"supervisord exited ({self.popen.returncode}); see {self.directory}")
            if time.monotonic() > deadline:
                raise RuntimeError("supervisord did not answer on its socket within 30 s")
            time.sleep(0.2)

    @property
    def rpc(self):
        transport = SupervisorTransport(serverurl=f"unix://{self.directory / 'supervisor.sock'}")
        # The host part is not used: the transport speaks over the unix socket.
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def processes(self) -> dict[str, dict]:
        """supervisord's view of each program: ``statename`` (RUNNING, BACKOFF, FATAL …), ``pid`` …"""
        return {info["name"]: info for info in self.rpc.getAllProcessInfo()}

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 60) -> None:
        """Stop every program (each with its whole process group), then supervisord."""
        if not self.alive():
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, 9)
            self.popen.wait(5)
