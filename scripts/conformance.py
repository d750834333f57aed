"""Run Tempest's compute API tests (``tempest.api.compute``) against this cloud and report the result.

Called by ``make conformance``. Starts a cloud like ``make demo`` does, but headless, on ports of its own
(API 8300, console proxy 6380), with its own database (``cloud_conformance``, made afresh each run), Redis
database 5 as its broker, and its state under ``var/conformance``; two simulated compute hosts
(``conformance-1`` and ``-2``, the fake driver in one worker: docs/conformance.md says why); an admin, member
and admin accounts each in a project of its own, two small flavors, the demo image and the demo's networks.
Installs Tempest (pinned, ``TEMPEST_REQUIREMENT``) into ``var/tempest-venv`` on first use, writes its
configuration for this cloud, runs it with a concurrency of 2, prints the counts as one line of JSON and a
table of what did not pass, keeps every result in ``<state>/results.json``, and stops the cloud.

    .venv/bin/python scripts/conformance.py [--regex RE | --include-list FILE] [--exclude-list FILE]
        [--concurrency 2] [--dynamic-credentials]

With ``--dynamic-credentials`` Tempest makes (and deletes) a project and users for each test class through
the built-in identity API, as the first admin account, instead of using the pre-provisioned accounts.

The fast subset (tests/integration/test_conformance_subset.py) runs it with ``--include-list`` on the
test database and broker, with ``--keep-database``. Exits 1 when any test failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE = ROOT / "var" / "conformance"


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regex", default=r"^tempest\.api\.compute\.", help="the tests to run (tempest run --regex)")
    parser.add_argument("--include-list", type=Path, help="a file of test ids or regexes to run instead")
    parser.add_argument("--exclude-list", type=Path, help="a file of test ids or regexes not to run")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--state-dir", type=Path, default=Path(os.environ.get("CONFORMANCE_STATE_DIR", DEFAULT_STATE)))
    parser.add_argument("--api-port", type=int, default=int(os.environ.get("CONFORMANCE_API_PORT", "8300")))
    parser.add_argument("--console-port", type=int, default=int(os.environ.get("CONFORMANCE_CONSOLE_PORT", "6380")))
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CONFORMANCE_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/cloud_conformance"),
    )
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="use the database as it is (migrated) instead of dropping and making it again",
    )
    parser.add_argument("--broker-url", default=os.environ.get("CONFORMANCE_BROKER_URL", "redis://127.0.0.1:6379/5"))
    parser.add_argument(
        "--results", type=Path, help="where to write every test's result (default <state>/results.json)"
    )
    parser.add_argument(
        "--dynamic-credentials",
        action="store_true",
        help="let Tempest make a project and users of its own for each test class through the identity API "
        "(as the cloud's admin) instead of using the pre-provisioned accounts",
    )
    return parser.parse_args(argv)


ARGS = arguments()
# demo.py reads where the cloud keeps its state and answers when it is imported.
os.environ["CLOUD_STATE_DIR"] = str(ARGS.state_dir.resolve())
os.environ["CLOUD_PUBLIC_URL"] = f"http://127.0.0.1:{ARGS.api_port}"

import demo  # noqa: E402  (scripts/ is this script's directory)
import requests  # noqa: E402
from supervision import CONTROL_PLANE_ONLY, Program, Supervisor, read_procfile  # noqa: E402

STATE = demo.STATE
API = demo.API
TEMPEST_REQUIREMENT = os.environ.get("TEMPEST_REQUIREMENT", "tempest==47.0.0")
TEMPEST_VENV = Path(os.environ.get("TEMPEST_VENV", ROOT / "var" / "tempest-venv"))
HOSTS = ["conformance-1", "conformance-2"]
HOST_PATTERN = "conformance-[1-2]"
MIN_MICROVERSION = "2.1"
MAX_MICROVERSION = "2.104"
NETWORK = "conformance-net"  # shared, so that every project's servers boot on it


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


def tempest_bin() -> Path:
    """Tempest's virtualenv, made and filled on first use (never the project's .venv: its pins differ)."""
    tempest = TEMPEST_VENV / "bin" / "tempest"
    python = TEMPEST_VENV / "bin" / "python"
    probe = [str(python), "-c", "import tempest, subunit, testtools"]
    wanted = TEMPEST_REQUIREMENT.partition("==")[2]
    if tempest.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        version = subprocess.run([str(tempest), "--version"], capture_output=True, text=True).stdout.split()
        if not wanted or (version and version[-1] == wanted):
            return tempest
    say(f"installing {TEMPEST_REQUIREMENT} into {TEMPEST_VENV}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(TEMPEST_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", TEMPEST_REQUIREMENT], check=True)
    subprocess.run(probe, check=True)
    return tempest


def environment() -> dict[str, str]:
    env = demo.environment()
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings.base"  # not a test run's settings, whoever starts it
    env["DATABASE_URL"] = ARGS.database_url
    env["CELERY_BROKER_URL"] = ARGS.broker_url
    env["API_LISTEN"] = f"127.0.0.1:{ARGS.api_port}"
    env["CONSOLEPROXY_LISTEN"] = f"127.0.0.1:{ARGS.console_port}"
    env["CONSOLEAUTH_URL"] = f"{API}/internal/consoleauth/"
    env["CONSOLE_PROXY_BASE_URL"] = f"http://127.0.0.1:{ARGS.console_port}/vnc_lite.html"
    env["CONSOLE_ALLOWED_ORIGINS"] = f"{API},http://127.0.0.1:{ARGS.console_port}"
    env["COMPUTE_CREDENTIALS"] = str(STATE / "secrets" / "compute-conformance.json")
    env["COMPUTE_METADATA_URL"] = f"{API}/internal/metadata"
    # Tempest resizes and migrates and expects to confirm itself; nothing is confirmed behind its back.
    env["RESIZE_CONFIRM_WINDOW"] = "0"
    return env


def fresh_database(url: str) -> None:
    """Drop and make the run's database, so that no earlier run's servers, users or hosts are in it."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    for statement in (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'):
        subprocess.run(["psql", admin, "-q", "-c", statement], check=True, capture_output=True)


def flush_broker(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_timeout=5).flushdb()


def programs(env: dict[str, str]) -> list[Program]:
    """The Procfile's programs; its compute line is one worker that is both simulated hosts."""
    hidden = dict.fromkeys(CONTROL_PLANE_ONLY, "")
    found = []
    for name, command in read_procfile(ROOT / "Procfile").items():
        if name != "compute":
            found.append(Program(name, command))
    compute = (
        ".venv/bin/celery -A compute_tasks.worker worker -n compute@conformance --pool threads --concurrency 8 "
        "--loglevel INFO"
    )
    found.append(
        Program(
            "compute",
            compute,
            {
                **hidden,
                "COMPUTE_HOSTS": HOST_PATTERN,
                "COMPUTE_HOST": HOSTS[0],
                "COMPUTE_DRIVER": "fake",
                "COMPUTE_STATE_DIR": str(STATE / "compute"),
                "COMPUTE_HEARTBEAT_INTERVAL": "2",
                "COMPUTE_CREDENTIALS": env["COMPUTE_CREDENTIALS"],
            },
        )
    )
    return found


def manage(env: dict[str, str], *args: str) -> None:
    """``manage.py`` with its output on stderr: stdout is for the result."""
    subprocess.run([demo.PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=sys.stderr)


def setup_cloud(env: dict[str, str]) -> dict:
    """Migrate, then make the demo's admin, image and networks, Tempest's accounts and flavors, the shared
    network Tempest boots on, and enroll the two hosts (trusted with routers)."""
    say("migrating the database")
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "collectstatic", "--noinput", "-v0")
    say(f"enrolling the simulated hosts {', '.join(HOSTS)}")
    manage(env, "host_enroll", HOST_PATTERN, "--output", env["COMPUTE_CREDENTIALS"], "--routers")
    manage(env, "demo_setup", "--public-cidr", "10.253.64.0/24", "--tenant-cidr", "10.0.64.0/24")
    out = subprocess.run(
        [demo.PYTHON, "manage.py", "conformance_setup", "--password-file", str(STATE / "secrets" / "tempest_password")],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    made = json.loads(out.strip().splitlines()[-1])
    # The scheduler filters the cloud runs, which Tempest checks before the tests that need one.
    query = "from django.conf import settings; print(','.join(settings.SCHEDULER['FILTERS']))"
    made["filters"] = subprocess.run(
        [demo.PYTHON, "manage.py", "shell", "--no-imports", "-c", query],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return made


def admin_session() -> requests.Session:
    session = requests.Session()
    session.auth = ("admin", (STATE / "secrets" / "admin_password").read_text().strip())
    return session


def shared_network(session: requests.Session) -> dict:
    """``conformance-net``: a shared VXLAN network with a subnet, the one every test's server boots on."""
    net = f"{API}/networking/v2.0"
    found = session.get(f"{net}/networks", params={"name": NETWORK}, timeout=10).json()["networks"]
    if found:
        return found[0]
    body = {"network": {"name": NETWORK, "shared": True, "provider:network_type": "vxlan"}}
    response = session.post(f"{net}/networks", json=body, timeout=10)
    if not response.ok:
        raise SystemExit(f"making {NETWORK}: {response.status_code} {response.text[:300]}")
    network = response.json()["network"]
    subnet = {"subnet": {"network_id": network["id"], "cidr": "10.0.65.0/24", "ip_version": 4, "name": NETWORK}}
    response = session.post(f"{net}/subnets", json=subnet, timeout=10)
    if not response.ok:
        raise SystemExit(f"making {NETWORK}'s subnet: {response.status_code} {response.text[:300]}")
    return network


def project_networks(made: dict, password: str, public: str) -> dict[str, str]:
    """A network of each Tempest project's own (``conformance-N-net``, with a subnet) behind a router of
    its own with its gateway on ``public``, made as that project's member or admin: Tempest's servers
    boot on their project's network, and their floating IPs are reached through their project's router.
    Returns each project's network name."""
    net = f"{API}/networking/v2.0"
    names: dict[str, str] = {}
    makers = [a for a in made["accounts"] if a["tempest_role"] in ("member", "admin")]
    for number, account in enumerate(makers, start=1):
        session = requests.Session()
        session.auth = (account["username"], password)
        name = f"{account['project_name']}-net"
        names[account["project_name"]] = name

        def post(path: str, body: dict, session=session, name=name) -> dict:
            response = session.post(f"{net}/{path}", json=body, timeout=10)
            if not response.ok:
                raise SystemExit(f"making {name}: POST {path}: {response.status_code} {response.text[:300]}")
            return response.json()

        network = post("networks", {"network": {"name": name}})["network"]
        cidr = f"10.64.{number}.0/24"
        subnet = post("subnets", {"subnet": {"network_id": network["id"], "cidr": cidr, "ip_version": 4}})["subnet"]
        router = post(
            "routers", {"router": {"name": f"{name}-router", "external_gateway_info": {"network_id": public}}}
        )
        response = session.put(
            f"{net}/routers/{router['router']['id']}/add_router_interface", json={"subnet_id": subnet["id"]}, timeout=10
        )
        if not response.ok:
            raise SystemExit(f"attaching {name} to its router: {response.status_code} {response.text[:300]}")
    return names


def image_ids(session: requests.Session) -> list[str]:
    """The demo image, and a second public image of the same bits (Tempest's ``image_ref_alt``, which
    rebuild tests boot a server into)."""
    images = f"{API}/image/v2/images"
    demo_image = session.get(images, params={"name": "demo"}, timeout=10).json()["images"][0]
    alt = session.get(images, params={"name": "demo-alt"}, timeout=10).json()["images"]
    if alt:
        return [demo_image["id"], alt[0]["id"]]
    body = {"name": "demo-alt", "disk_format": "qcow2", "container_format": "bare", "visibility": "public"}
    made = session.post(images, json=body, timeout=10).json()
    with (ROOT / "var" / "images" / "demo.qcow2").open("rb") as data:
        response = session.put(
            f"{images}/{made['id']}/file",
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=120,
        )
    if not response.ok:
        raise SystemExit(f"uploading demo-alt: {response.status_code} {response.text[:300]}")
    return [demo_image["id"], made["id"]]


def accounts_yaml(made: dict, password: str, networks: dict[str, str]) -> str:
    """Tempest's pre-provisioned credentials (``test_accounts_file``), as YAML written by hand: each is a
    small mapping of plain strings, which JSON quoting keeps valid YAML."""
    lines = []
    # Tempest's alternate user is the first free account of any role but admin, in the file's order: the
    # members come first, so that it is another project's member, never a reader or a second member of
    # the primary user's own project.
    order = {"member": 0, "reader": 1, "manager": 2, "admin": 3}
    for account in sorted(made["accounts"], key=lambda a: order[a["tempest_role"]]):
        lines.append(f"- username: {json.dumps(account['username'])}")
        lines.append(f"  project_name: {json.dumps(account['project_name'])}")
        lines.append(f"  password: {json.dumps(password)}")
        lines.append(f"  roles: [{json.dumps(account['tempest_role'])}]")
        network = networks.get(account["project_name"], NETWORK)
        lines.append(f"  resources: {{network: {json.dumps(network)}}}")
    return "\n".join(lines) + "\n"


def auth_section(work: Path, made: dict, password: str) -> dict[str, str]:
    """Tempest's ``[auth]``: the pre-provisioned accounts, or (``--dynamic-credentials``) the first admin
    account's credentials, with which Tempest makes a project and users for each test class and deletes
    them after. Its projects get no networks of their own (``create_isolated_networks``): their servers
    boot on the shared ``conformance-net`` (``[compute] fixed_network_name``)."""
    common = {
        "default_credentials_domain_name": "Default",
        "create_isolated_networks": "false",
        "tempest_roles": "member",
    }
    if not ARGS.dynamic_credentials:
        return {"use_dynamic_credentials": "false", "test_accounts_file": str(work / "etc" / "accounts.yaml"), **common}
    admin = next(a for a in made["accounts"] if a["tempest_role"] == "admin")
    return {
        "use_dynamic_credentials": "true",
        "admin_username": admin["username"],
        "admin_password": password,
        "admin_project_name": admin["project_name"],
        "admin_domain_name": "Default",
        **common,
    }


def tempest_conf(work: Path, images: list[str], made: dict, public_network: str, password: str) -> str:
    flavors = [flavor["id"] for flavor in made["flavors"]]
    sections = {
        "DEFAULT": {"log_file": str(work / "tempest.log"), "use_stderr": "false"},
        "oslo_concurrency": {"lock_path": str(work / "locks")},
        "auth": auth_section(work, made, password),
        "identity": {
            "uri_v3": f"{API}/identity/v3",
            "auth_version": "v3",
            "region": "RegionOne",
            "v3_endpoint_type": "public",
            "admin_role": "admin",
        },
        "identity-feature-enabled": {"api_v2": "false", "api_v3": "true"},
        "service_available": {
            "nova": "true",
            "glance": "true",
            "neutron": "true",
            "cinder": "true" if os.environ.get("CINDER_ENDPOINT") else "false",
            "swift": "false",
            "heat": "false",
            "horizon": "false",
            "ironic": "false",
        },
        "compute": {
            "image_ref": images[0],
            "image_ref_alt": images[1],
            "flavor_ref": flavors[0],
            "flavor_ref_alt": flavors[1],
            "fixed_network_name": NETWORK,
            "min_compute_nodes": str(len(HOSTS)),
            "min_microversion": MIN_MICROVERSION,
            "max_microversion": MAX_MICROVERSION,
            "build_timeout": "120",
            "build_interval": "1",
            "region": "RegionOne",
            "endpoint_type": "publicURL",
        },
        "compute-feature-enabled": {
            "resize": "true",
            "cold_migration": "true",
            "live_migration": "true",
            "block_migration_for_live_migration": "true",
            "live_migrate_back_and_forth": "true",
            "can_migrate_between_any_hosts": "true",
            "shelve": "true",
            "shelve_migrate": "true",
            "pause": "true",
            "suspend": "true",
            "rescue": "true",
            "snapshot": "true",
            "console_output": "true",
            "interface_attach": "true",
            "config_drive": "true",
            "metadata_service": "true",
            "disk_config": "false",
            "change_password": "false",
            "enable_instance_password": "false",
            "personality": "true",
            "vnc_console": "true",
            "spice_console": "false",
            "serial_console": "false",
            "swap_volume": "false",
            "volume_multiattach": "false",
            "attach_encrypted_volume": "false",
            "stable_rescue": "false",
            "unified_limits": "false",
            "scheduler_enabled_filters": made["filters"],
        },
        "image": {"endpoint_type": "publicURL", "region": "RegionOne"},
        "image-feature-enabled": {"api_v2": "true", "api_v1": "false"},
        "network": {
            "endpoint_type": "publicURL",
            "region": "RegionOne",
            "public_network_id": public_network,
            "floating_network_name": "public",
            "project_networks_reachable": "false",
            "shared_physical_network": "false",
        },
        "network-feature-enabled": {"ipv6": "false", "port_security": "true"},
        "validation": {"run_validation": "false"},
    }
    return "".join(
        f"[{name}]\n" + "".join(f"{key} = {value}\n" for key, value in options.items()) + "\n"
        for name, options in sections.items()
    )


def workspace(work: Path) -> None:
    """Tempest's working directory: its stestr configuration (what ``tempest init`` writes, without
    registering a workspace in the user's home), ``etc/`` and the lock directory."""
    for directory in (work / "etc", work / "locks"):
        directory.mkdir(parents=True, exist_ok=True)
    package = subprocess.run(
        [str(TEMPEST_VENV / "bin" / "python"), "-c", "import os, tempest; print(os.path.dirname(tempest.__file__))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (work / ".stestr.conf").write_text(
        f"[DEFAULT]\ntest_path={package}/test_discover\ntop_dir={package}\ngroup_regex=([^\\.]*\\.)*\n"
    )


def run_tempest(tempest: Path, work: Path) -> Path:
    """``tempest run`` in its workspace; returns where the subunit stream of the run was kept."""
    command = [str(tempest), "run", "--config-file", str(work / "etc" / "tempest.conf"), "--concurrency"]
    command.append(str(ARGS.concurrency))
    if ARGS.include_list:
        command += ["--include-list", str(ARGS.include_list.resolve())]
    else:
        command += ["--regex", ARGS.regex]
    if ARGS.exclude_list:
        command += ["--exclude-list", str(ARGS.exclude_list.resolve())]
    say("running " + shlex.join(command))
    subprocess.run(command, cwd=work, stdout=sys.stderr)  # its exit status is 1 when a test failed
    stream = work / "last.subunit"
    with stream.open("wb") as out:
        subprocess.run([str(tempest.parent / "stestr"), "last", "--subunit"], cwd=work, stdout=out, check=True)
    return stream


def parse_results(stream: Path) -> dict[str, dict]:
    with stream.open("rb") as data:
        out = subprocess.run(
            [str(TEMPEST_VENV / "bin" / "python"), str(ROOT / "scripts" / "conformance_subunit.py")],
            stdin=data,
            capture_output=True,
            check=True,
        )
    return json.loads(out.stdout)


def summary(results: dict[str, dict], started: float) -> dict:
    counts = {
        status: sum(1 for r in results.values() if r["status"] == status) for status in ("passed", "failed", "skipped")
    }
    return {
        **counts,
        "total": len(results),
        "seconds": round(time.monotonic() - started),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tempest": TEMPEST_REQUIREMENT,
    }


def table(results: dict[str, dict], counts: dict) -> str:
    rows = [f"{'status':<8} {'count':>5}"]
    rows += [f"{status:<8} {counts[status]:>5}" for status in ("passed", "failed", "skipped")]
    for status in ("failed", "skipped"):
        for test_id, result in sorted(results.items()):
            if result["status"] == status:
                reason = (result.get("reason") or "").strip().splitlines()
                rows.append(f"{status.upper():<8} {test_id}: {reason[-1][:160] if reason else ''}")
    return "\n".join(rows)


def main() -> int:
    started = time.monotonic()
    tempest = tempest_bin()
    STATE.mkdir(parents=True, exist_ok=True)
    env = environment()
    if not ARGS.keep_database:
        say(f"making the database afresh: {ARGS.database_url.rsplit('/', 1)[-1]}")
        fresh_database(ARGS.database_url)
    flush_broker(ARGS.broker_url)
    os.chdir(ROOT)
    made = setup_cloud(env)
    say(f"starting api (:{ARGS.api_port}), conductor, beat, consoleproxy (:{ARGS.console_port}) and the hosts")
    supervisor = Supervisor(programs(env), STATE / "log", env).start(stdout=subprocess.DEVNULL)
    stopping = []

    def stop(*_):
        if stopping:
            return
        stopping.append(True)
        say("stopping the cloud")
        supervisor.stop()

    signal.signal(signal.SIGTERM, lambda *_: (stop(), sys.exit(1)))
    try:
        demo.wait_for("the API", lambda: requests.get(f"{API}/compute/", timeout=2).ok, 60)
        demo.wait_for("both hosts' first heartbeat", lambda: demo._hosts_up(env, HOSTS), 90)
        session = admin_session()
        shared_network(session)
        images = image_ids(session)
        public = demo.network_id(session, "public")
        work = STATE / "tempest"
        workspace(work)
        password = (STATE / "secrets" / "tempest_password").read_text().strip()
        files = [("tempest.conf", tempest_conf(work, images, made, public, password))]
        if not ARGS.dynamic_credentials:
            networks = project_networks(made, password, public)
            files.append(("accounts.yaml", accounts_yaml(made, password, networks)))
        for name, text in files:
            path = work / "etc" / name
            path.touch(mode=0o600)
            path.chmod(0o600)  # they hold the accounts' password
            path.write_text(text)
        stream = run_tempest(tempest, work)
    except KeyboardInterrupt:
        stop()
        return 130
    finally:
        stop()
    results = parse_results(stream)
    counts = summary(results, started)
    results_file = ARGS.results or STATE / "results.json"
    results_file.write_text(json.dumps({"summary": counts, "tests": results}, indent=1, sort_keys=True))
    print(json.dumps(counts), flush=True)
    print(table(results, counts), flush=True)
    return 1 if counts["failed"] or not counts["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
