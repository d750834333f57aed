"""openstacksdk (in .venv-openstack, beside the ``openstack`` CLI) against the live API, one call per
subprocess as a script of a user would make it: ``tests/openstack_sdk_calls.py`` holds the calls.

``OpenStackSDK`` keeps the arguments of one ``openstack.connect(...)``; ``call()`` returns what a call gave
and ``refused()`` the error of a call the cloud must refuse (its HTTP status, type and message)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.openstack_cli import VENV_BIN, CommandFailed, OpenStackCLI

CALLS_SCRIPT = Path(__file__).resolve().parent / "openstack_sdk_calls.py"


class OpenStackSDK:
    """One ``openstack.connect(**connect)`` of a user, made anew for every call."""

    def __init__(self, *, home: Path, **connect: str):
        if not (VENV_BIN / "python").exists():
            raise CommandFailed("no .venv-openstack: run `WITH_TEST_DEPS=1 scripts/bootstrap.sh`")
        self.home = home
        self.connect = connect
        self.history: list[str] = []

    @classmethod
    def password(cls, cli: OpenStackCLI) -> OpenStackSDK:
        """Password auth as ``cli``'s user in their project, the way a script names it to ``connect``."""
        env = cli.env
        return cls(
            home=cli.home,
            auth_url=env["OS_AUTH_URL"],
            username=env["OS_USERNAME"],
            password=env["OS_PASSWORD"],
            project_name=env["OS_PROJECT_NAME"],
            user_domain_name=env["OS_USER_DOMAIN_NAME"],
            project_domain_name=env["OS_PROJECT_DOMAIN_NAME"],
            region_name=env["OS_REGION_NAME"],
            interface=env["OS_INTERFACE"],
        )

    def application_credential(self, *, credential_id: str, secret: str) -> OpenStackSDK:
        """The same cloud with an application credential instead of a password."""
        return OpenStackSDK(
            home=self.home,
            auth_type="v3applicationcredential",
            auth_url=self.connect["auth_url"],
            application_credential_id=credential_id,
            application_credential_secret=secret,
            region_name=self.connect["region_name"],
            interface=self.connect["interface"],
        )

    def _run(self, name: str, args: dict) -> dict:
        started = time.monotonic()
        result = subprocess.run(
            # -I: the script's own folder (tests/, whose http.py would hide the standard library's) is not
            # on the path.
            [str(VENV_BIN / "python"), "-I", str(CALLS_SCRIPT), name],
            input=json.dumps({"connect": self.connect, "args": args}),
            env={"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(self.home), "LANG": "C.UTF-8"},
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.history.append(
            f">>> {name}({args})   # rc={result.returncode}, {time.monotonic() - started:.1f}s\n"
            f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
        )
        if result.returncode != 0:
            raise CommandFailed(f"the sdk call {name} crashed:\n{result.stderr[-3000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])

    def call(self, call_name: str, /, **args: Any) -> Any:
        """What the call returned; it must succeed."""
        answer = self._run(call_name, args)
        if "error" in answer:
            raise CommandFailed(f"the sdk call {call_name} was refused: {answer['error']}")
        return answer["result"]

    def refused(self, call_name: str, /, **args: Any) -> dict:
        """The error of a call the cloud must refuse: ``status``, ``type`` and ``message``."""
        answer = self._run(call_name, args)
        if "error" not in answer:
            raise CommandFailed(f"the sdk call {call_name} succeeded but should have been refused: {answer['result']}")
        return answer["error"]

    def transcript(self) -> str:
        return "\n".join(self.history[-40:])
