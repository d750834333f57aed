"""The real ``openstack`` CLI (python-openstackclient in .venv-openstack) against the live API and Keystone.

``OpenStackCLI`` runs one command at a time as a subprocess with an openrc-like environment and nothing
else from ours (no clouds.yaml, no OS_* leaking in); ``json()`` and ``value()`` parse what it prints.
``cli_cloud`` makes a test module's live API use the session's Keystone and registers the live server in
Keystone's catalog, as `manage.py register_catalog` does for a real cloud; ``builtin_cli_cloud`` gives the
same users with no Keystone at all: the CLI authenticates at the cloud's own ``/identity/v3``.
"""

from __future__ import annotations

import atexit
import copy
import io
import json
import os
import re
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings

from tests.keystone import ADMIN_PASSWORD, REGION, KeystoneServer
from tests.processes import ROOT

VENV_BIN = ROOT / ".venv-openstack" / "bin"
CLI_SITE = Path(__file__).resolve().parent / "openstack_cli_site"
MEMBER_PROJECT = "cli-project"
OTHER_PROJECT = "cli-other-project"


_PROGRESS = re.compile(r"(?:\s*Progress: \d+)+")


class CommandFailed(AssertionError):
    pass


class OpenStackCLI:
    """One Keystone user's ``openstack`` command line, as a person with an openrc would type it."""

    def __init__(
        self, keystone: KeystoneServer | str, *, username: str, password: str, project: str, home: Path, region=REGION
    ):
        if not (VENV_BIN / "openstack").exists():
            raise CommandFailed("no .venv-openstack: run `WITH_TEST_DEPS=1 scripts/bootstrap.sh`")
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.username = username
        self.project = project
        self.history: list[str] = []
        self.env = {
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "HOME": str(home),
            "LANG": "C.UTF-8",
            # A Keystone, or the URL of the cloud's built-in identity API.
            "OS_AUTH_URL": keystone if isinstance(keystone, str) else keystone.auth_url,
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": username,
            "OS_PASSWORD": password,
            "OS_PROJECT_NAME": project,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_REGION_NAME": region,
            "OS_INTERFACE": "public",
            # The CLI's --wait looks every 0.2 s, not every 5 s (see tests/openstack_cli_site; 0 keeps the CLI's).
            "PYTHONPATH": str(CLI_SITE),
            "OS_TEST_WAIT_POLL_SECONDS": os.environ.get("OS_TEST_WAIT_POLL_SECONDS", "0.2"),
        }

    def with_env(self, **changes: str | None) -> OpenStackCLI:
        """The same person's command line with other ``OS_*`` variables (None removes one): another password,
        a token or an application credential instead of the password. Its commands join this one's
        transcript."""
        other = copy.copy(self)
        other.env = {key: value for key, value in {**self.env, **changes}.items() if value is not None}
        return other

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Runs ``openstack ARGS``; whatever the outcome, remembers the command and what it printed."""
        started = time.monotonic()
        result = _ZYGOTE.run(list(args), env=self.env, cwd=self.home, timeout=timeout)
        self.history.append(
            f"$ openstack {' '.join(args)}   # {self.username}, rc={result.returncode}, "
            f"{time.monotonic() - started:.1f}s\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
        return result

    def ok(self, *args: str, timeout: float = 300) -> str:
        """The output of a command that must succeed."""
        result = self.run(*args, timeout=timeout)
        if result.returncode != 0:
            raise CommandFailed(
                f"`openstack {' '.join(args)}` failed (rc={result.returncode}):\n{result.stderr or result.stdout}"
            )
        return result.stdout

    def json(self, *args: str, timeout: float = 300):
        """The parsed ``-f json`` output of a command that must succeed."""
        out = self.ok(*args, "-f", "json", timeout=timeout)
        # `--wait` prints the server's progress as it changes ("Progress: 5"), before the JSON, as with Nova.
        waited = _PROGRESS.match(out)
        try:
            return json.loads(out[waited.end() :] if waited else out)
        except ValueError:
            raise CommandFailed(f"`openstack {' '.join(args)} -f json` printed no JSON:\n{out[:2000]}") from None

    def value(self, *args: str) -> str:
        return self.ok(*args, "-f", "value").strip()

    def fails(self, *args: str) -> str:
        """The error output of a command that must fail."""
        result = self.run(*args)
        if result.returncode == 0:
            raise CommandFailed(f"`openstack {' '.join(args)}` succeeded but should have failed:\n{result.stdout}")
        return result.stderr

    def wait_for_status(self, server: str, status: str, timeout: float = 120) -> dict:
        """``server show`` until the server has ``status`` (ERROR ends the wait with the fault). Between two
        commands the database is watched for the status instead of starting the CLI again and again: the
        CLI's answer is still what counts."""
        deadline = time.monotonic() + timeout
        while True:
            _until_the_database_shows(server, (status, "ERROR"), deadline)
            shown = self.json("server", "show", server)
            if shown["status"] == status:
                return shown
            if shown["status"] == "ERROR" and status != "ERROR":
                raise CommandFailed(f"{server} went to ERROR: {shown.get('fault')}")
            if time.monotonic() > deadline:
                raise CommandFailed(f"{server} is {shown['status']} after {timeout}s, not {status}")
            time.sleep(0.5)

    def transcript(self) -> str:
        return "\n".join(self.history[-40:])


class _Zygote:
    """The process that runs each ``openstack`` command as a fork of itself after importing the CLI once
    (``tests/openstack_cli_zygote.py``): a command is still a process of its own, with its own arguments,
    environment, directory, output and exit status, but skips the second or so of Python's and the CLI's
    imports that each fresh ``openstack`` process spends before it sends a request."""

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def _started(self) -> subprocess.Popen:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [str(VENV_BIN / "python"), str(Path(__file__).with_name("openstack_cli_zygote.py"))],
                env={
                    "PATH": f"{VENV_BIN}:/usr/bin:/bin",
                    "LANG": "C.UTF-8",
                    "PYTHONPATH": str(CLI_SITE),
                    "OS_TEST_WAIT_POLL_SECONDS": os.environ.get("OS_TEST_WAIT_POLL_SECONDS", "0.2"),
                },
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            atexit.register(self._process.kill)
        return self._process

    def run(self, argv: list[str], *, env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
        with self._lock, tempfile.TemporaryDirectory() as scratch:
            out, err = Path(scratch) / "stdout", Path(scratch) / "stderr"
            process = self._started()
            request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
            process.stdin.write(json.dumps({**request, "timeout": timeout}) + "\n")
            process.stdin.flush()
            answer = process.stdout.readline()
            if not answer:
                raise CommandFailed(f"the openstack command runner died (rc={process.wait()})")
            outcome = json.loads(answer)
            stdout = out.read_text(errors="replace") if out.exists() else ""
            stderr = err.read_text(errors="replace") if err.exists() else ""
        command = ["openstack", *argv]
        if outcome["timed_out"]:
            raise subprocess.TimeoutExpired(command, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(command, outcome["rc"], stdout, stderr)


_ZYGOTE = _Zygote()


def _until_the_database_shows(server: str, statuses: tuple[str, ...], deadline: float) -> None:
    """Until the one live server named (or with the id) ``server`` has an API status in ``statuses`` as the
    database says, or the deadline; at once when the name is not one live server's."""
    from portal.models import Instance
    from portal.states import VmState, api_status

    key = {"uuid": server} if _is_uuid(server) else {"name": server}
    while time.monotonic() < deadline:
        rows = list(
            Instance.objects.filter(**key).exclude(vm_state=VmState.DELETED).values_list("vm_state", "task_state")[:2]
        )
        if len(rows) != 1 or api_status(*rows[0]) in statuses:
            return
        time.sleep(0.1)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def rows_by(rows: list[dict], key: str) -> dict:
    """``-f json`` list output keyed by one of its columns."""
    return {row[key]: row for row in rows}


@dataclass
class CliCloud:
    keystone: KeystoneServer | None  # None: the cloud's built-in identity
    api_url: str
    admin: OpenStackCLI
    member: OpenStackCLI
    other: OpenStackCLI  # a member of another project
    member_project_id: str
    admin_project_id: str
    member_user_id: str


@pytest.fixture(scope="module")
def cli_cloud(keystone, live_server, tmp_path_factory):
    """The live API with Keystone identity on, registered in Keystone's catalog; an admin and a member CLI."""
    # The API in this process is the cloud: its public URL (links, signed image URLs, the catalog) is the
    # live server's.
    settings_override = override_settings(
        KEYSTONE=keystone.settings(), CLOUD={**settings.CLOUD, "PUBLIC_URL": live_server.url}
    )
    settings_override.enable()
    try:
        out = io.StringIO()
        call_command("register_catalog", stdout=out)
        member = keystone.make_user("cli-member", "cli-member-pw", MEMBER_PROJECT, "member")
        keystone.make_user("cli-other", "cli-other-pw", OTHER_PROJECT, "member")
        home = tmp_path_factory.mktemp("openstack-cli")
        yield CliCloud(
            keystone=keystone,
            api_url=live_server.url,
            admin=OpenStackCLI(
                keystone, username="admin", password=ADMIN_PASSWORD, project="admin", home=home / "admin"
            ),
            member=OpenStackCLI(
                keystone, username="cli-member", password="cli-member-pw", project=MEMBER_PROJECT, home=home / "member"
            ),
            other=OpenStackCLI(
                keystone, username="cli-other", password="cli-other-pw", project=OTHER_PROJECT, home=home / "other"
            ),
            member_project_id=member["project_id"],
            admin_project_id=keystone.project("admin"),
            member_user_id=member["id"],
        )
    finally:
        settings_override.disable()


def with_identities(*names: str):
    """Runs one CLI test with each of these identities (``keystone``, ``builtin``), whatever its module's."""

    def mark(test):
        test.cli_identities = names
        return test

    return mark


@pytest.fixture(scope="module")
def cli_identity():
    """Which identity the CLI authenticates with: ``keystone`` (a real Keystone) or ``builtin`` (the cloud's
    own); a test directory parametrizes it to run its tests with both."""
    return "keystone"


@pytest.fixture(scope="module")
def identity_cli_cloud(cli_identity, request):
    """The module's cloud for ``cli_identity``. Module-scoped so that its settings are in place before any
    test's own (pytest-django's live server restores per test what it found at the test's start)."""
    return request.getfixturevalue("builtin_cli_cloud" if cli_identity == "builtin" else "cli_cloud")


@pytest.fixture
def cli(identity_cli_cloud, cli_identity, transactional_db, request):
    """The module's CLIs for one test (the live API they talk to uses the test's database); on failure, the
    commands the test ran and what they printed."""
    cloud = identity_cli_cloud
    if cli_identity == "builtin":
        builtin_people_make(cloud)
    users = (cloud.admin, cloud.member, cloud.other)
    for user in users:
        user.history.clear()
    yield cloud
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("===== openstack CLI transcript =====")
        for user in users:
            print(user.transcript())


BUILTIN_PEOPLE = (
    ("admin", "admin", "admin"),
    ("cli-member", MEMBER_PROJECT, "member"),
    ("cli-other", OTHER_PROJECT, "member"),
)


@pytest.fixture(scope="module")
def builtin_cli_cloud(live_server, tmp_path_factory):
    """The live API with its built-in identity (no Keystone), and the CLIs of local users ``admin`` (admin
    of project ``admin``), ``cli-member`` and ``cli-other`` (members of two other projects). The users
    themselves are made for each test by ``cli``."""
    settings_override = override_settings(
        KEYSTONE={**settings.KEYSTONE, "AUTH_URL": ""}, CLOUD={**settings.CLOUD, "PUBLIC_URL": live_server.url}
    )
    settings_override.enable()
    auth_url = f"{live_server.url}/identity/v3"
    home = tmp_path_factory.mktemp("openstack-cli-builtin")
    project_ids = {project: uuid.uuid4().hex for _, project, _ in BUILTIN_PEOPLE}
    clis = {
        username: OpenStackCLI(
            auth_url, username=username, password=f"{username}-pw", project=project, home=home / username
        )
        for username, project, _ in BUILTIN_PEOPLE
    }
    try:
        yield CliCloud(
            keystone=None,
            api_url=live_server.url,
            admin=clis["admin"],
            member=clis["cli-member"],
            other=clis["cli-other"],
            member_project_id=project_ids[MEMBER_PROJECT],
            admin_project_id=project_ids["admin"],
            member_user_id="cli-member",
        )
    finally:
        settings_override.disable()


def builtin_people_make(cloud: CliCloud) -> None:
    """The built-in identity's users, projects and roles (each test's database starts empty)."""
    from portal.models import Membership, Project
    from tests.factories import UserFactory

    ids = {MEMBER_PROJECT: cloud.member_project_id, "admin": cloud.admin_project_id}
    for username, project_name, role in BUILTIN_PEOPLE:
        user = UserFactory(username=username, password=f"{username}-pw")
        project, _ = Project.objects.get_or_create(
            name=project_name, defaults={"id": ids.get(project_name) or uuid.uuid4().hex}
        )
        Membership.objects.update_or_create(user=user, project=project, defaults={"role": role})
