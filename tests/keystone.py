"""A real Keystone for tests: its own virtualenv, a database of its own on the machine's PostgreSQL (made at
start, dropped at stop: its threads write at once, which SQLite can answer with "database is locked"),
gunicorn on a free port.

``KeystoneServer`` runs ``keystone-manage`` (db_sync, key repositories, bootstrap) and starts gunicorn with
no command-line arguments (Keystone parses the process's argv with oslo.config and refuses gunicorn's),
then offers the few identity calls the tests need: projects, users, role grants, tokens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
import requests

from scripts.local_cinder import DATABASE_SERVER
from tests.processes import ROOT, free_port

VENV_BIN = ROOT / ".venv-keystone" / "bin"
ADMIN_PASSWORD = "keystone-admin-secret"
REGION = "RegionOne"

KEYSTONE_CONF = """\
[DEFAULT]
debug = false
[database]
connection = {database}
[fernet_tokens]
key_repository = {dir}/fernet-keys
[fernet_receipts]
key_repository = {dir}/fernet-keys
[credential]
key_repository = {dir}/credential-keys
[identity]
password_hash_rounds = 4
"""

GUNICORN_CONF = """\
wsgi_app = "keystone.wsgi.api:application"
bind = "127.0.0.1:{port}"
workers = 1
threads = 4
"""


class KeystoneError(AssertionError):
    pass


def server_sql(statement: str) -> None:
    with psycopg.connect(f"{DATABASE_SERVER}/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


class KeystoneServer:
    def __init__(self, work_dir: Path):
        self.dir = work_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.auth_url = f"{self.base}/v3"
        self.log_path = work_dir / "keystone.log"
        self.popen: subprocess.Popen | None = None
        self._admin_token: str | None = None
        self.database = f"keystone_{uuid.uuid4().hex[:8]}"

    # --- process ---------------------------------------------------------------------------------
    def _manage(self, *args: str) -> None:
        conf = self.dir / "keystone.conf"
        result = subprocess.run(
            [str(VENV_BIN / "keystone-manage"), "--config-file", str(conf), *args],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            raise KeystoneError(f"keystone-manage {args[0]} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> KeystoneServer:
        if not (VENV_BIN / "keystone-manage").exists():
            raise KeystoneError("no .venv-keystone: run `WITH_TEST_DEPS=1 scripts/bootstrap.sh`")
        server_sql(f'CREATE DATABASE "{self.database}"')
        database = f"{DATABASE_SERVER.replace('postgresql://', 'postgresql+psycopg2://', 1)}/{self.database}"
        (self.dir / "keystone.conf").write_text(KEYSTONE_CONF.format(dir=self.dir, database=database))
        (self.dir / "gunicorn.conf.py").write_text(GUNICORN_CONF.format(port=self.port))
        self._manage("db_sync")
        owner = ("--keystone-user", "root", "--keystone-group", "root")
        self._manage("fernet_setup", *owner)
        self._manage("credential_setup", *owner)
        endpoint = f"{self.auth_url}/"
        self._manage(
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-admin-url",
            endpoint,
            "--bootstrap-internal-url",
            endpoint,
            "--bootstrap-public-url",
            endpoint,
            "--bootstrap-region-id",
            REGION,
        )
        env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.dir / "keystone.conf")}
        log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [str(VENV_BIN / "gunicorn")],  # no arguments: oslo.config would reject them
            cwd=self.dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.auth_url, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            if self.popen.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise KeystoneError(f"Keystone did not start:\n{self.log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        server_sql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:]

    # --- identity calls --------------------------------------------------------------------------
    def authenticate(
        self, username: str, password: str, project: str | None = None, domain: str = "Default"
    ) -> tuple[str, dict]:
        """A token for ``username`` (scoped to ``project`` when given) and the token's body."""
        auth: dict = {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": username, "domain": {"name": domain}, "password": password}},
            }
        }
        if project is not None:
            auth["scope"] = {"project": {"name": project, "domain": {"name": domain}}}
        response = requests.post(f"{self.auth_url}/auth/tokens", json={"auth": auth}, timeout=10)
        if response.status_code != 201:
            raise KeystoneError(f"token for {username}: {response.status_code} {response.text}")
        return response.headers["X-Subject-Token"], response.json()["token"]

    def token(self, username: str, password: str, project: str | None = None) -> str:
        return self.authenticate(username, password, project)[0]

    def admin_token(self) -> str:
        if self._admin_token is None:
            self._admin_token = self.token("admin", ADMIN_PASSWORD, "admin")
        return self._admin_token

    def call(self, method: str, path: str, body: dict | None = None, expect: tuple[int, ...] = (200, 201, 204)):
        response = requests.request(
            method, f"{self.auth_url}{path}", json=body, headers={"X-Auth-Token": self.admin_token()}, timeout=10
        )
        if response.status_code not in expect:
            raise KeystoneError(f"{method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def project(self, name: str) -> str:
        """The id of the project ``name`` in the Default domain, created when missing."""
        found = self.call("GET", f"/projects?name={name}&domain_id=default")["projects"]
        if found:
            return found[0]["id"]
        body = {"project": {"name": name, "domain_id": "default", "description": f"test project {name}"}}
        return self.call("POST", "/projects", body)["project"]["id"]

    def user(self, name: str, password: str) -> str:
        """The id of the user ``name``, created (or given ``password`` again) as needed."""
        found = self.call("GET", f"/users?name={name}&domain_id=default")["users"]
        if found:
            user_id = found[0]["id"]
            self.call("PATCH", f"/users/{user_id}", {"user": {"password": password}})
            return user_id
        body = {"user": {"name": name, "password": password, "domain_id": "default"}}
        return self.call("POST", "/users", body)["user"]["id"]

    def role_id(self, name: str) -> str:
        found = self.call("GET", f"/roles?name={name}")["roles"]
        if found:
            return found[0]["id"]
        return self.call("POST", "/roles", {"role": {"name": name}})["role"]["id"]

    def grant(self, user_id: str, project_id: str, role: str) -> None:
        self.call("PUT", f"/projects/{project_id}/users/{user_id}/roles/{self.role_id(role)}")

    def revoke_grant(self, user_id: str, project_id: str, role: str) -> None:
        self.call("DELETE", f"/projects/{project_id}/users/{user_id}/roles/{self.role_id(role)}")

    def revoke_token(self, token: str) -> None:
        requests.delete(
            f"{self.auth_url}/auth/tokens",
            headers={"X-Auth-Token": self.admin_token(), "X-Subject-Token": token},
            timeout=10,
        ).raise_for_status()

    def make_user(self, name: str, password: str, project: str, role: str) -> dict:
        """A user with ``role`` in ``project`` (both created when missing): names and ids."""
        project_id = self.project(project)
        user_id = self.user(name, password)
        self.grant(user_id, project_id, role)
        return {"name": name, "password": password, "id": user_id, "project": project, "project_id": project_id}

    def settings(self, **overrides) -> dict:
        """``settings.KEYSTONE`` for a cloud using this Keystone, with ``admin`` as its service user."""
        config = {
            "AUTH_URL": self.auth_url,
            "USERNAME": "admin",
            "PASSWORD": ADMIN_PASSWORD,
            "PROJECT_NAME": "admin",
            "USER_DOMAIN_NAME": "Default",
            "PROJECT_DOMAIN_NAME": "Default",
            "LOGIN_DOMAIN_NAME": "Default",
            "REGION_NAME": REGION,
            "TIMEOUT": 10,
            "TOKEN_CACHE_TTL": 300,
            "TOKEN_CACHE_SIZE": 1000,
        }
        return {**config, **overrides}

    def register_service(self, service_type: str, name: str, url: str) -> str:
        """A new catalog service with public, internal and admin endpoints at ``url``; its id."""
        body = {"service": {"type": service_type, "name": name, "enabled": True}}
        service_id = self.call("POST", "/services", body)["service"]["id"]
        for interface in ("public", "internal", "admin"):
            endpoint = {"service_id": service_id, "interface": interface, "region_id": REGION, "url": url}
            self.call("POST", "/endpoints", {"endpoint": endpoint})
        return service_id

    def delete_service(self, service_id: str) -> None:
        """The service and its endpoints leave the catalog."""
        self.call("DELETE", f"/services/{service_id}", expect=(204, 404))

    def catalog_entries(self, service_type: str) -> list[dict]:
        """The services of ``service_type`` with their endpoints, as the catalog API shows them."""
        services = self.call("GET", f"/services?type={service_type}")["services"]
        for service in services:
            service["endpoints"] = self.call("GET", f"/endpoints?service_id={service['id']}")["endpoints"]
        return services


@pytest.fixture(scope="session")
def keystone(tmp_path_factory):
    """A real Keystone for the whole test session, bootstrapped with ``admin`` in project ``admin``."""
    server = KeystoneServer(tmp_path_factory.mktemp("keystone")).start()
    yield server
    server.stop()


@pytest.fixture
def keystone_settings(keystone, settings):
    """This test's cloud validates tokens against the session's Keystone (a fresh token cache each test)."""
    settings.KEYSTONE = keystone.settings()
    return settings
