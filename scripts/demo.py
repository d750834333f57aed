"""Run the whole cloud on this machine with a demo VM, in the foreground; Ctrl-C stops everything.

Called by ``make demo`` after scripts/bootstrap.sh. Starts every process of the Procfile under supervisord
(scripts/supervision.py: a process that dies is started again, the others keep serving), boots (or
restarts) ``demo-1`` on the shared flat network ``public`` and ``demo-2`` on the project's VXLAN network
``demo-net`` through the compute API, prints where everything is, and on Ctrl-C stops the VMs it finds
running, then every process, then removes the networks it made on this machine (scripts/demo_network.py:
bridge ``br-public`` with ``public``'s gateway address, routes to ``unreachable`` for the demo's ranges,
the hosts' namespaces; ``DEMO_PUBLIC_MASQUERADE=1`` lets guests out through this machine).

``DEMO_HOSTS=N`` (default 1) runs N hypervisor hosts: with more than one, each is a private libvirtd on
its own loopback address 127.0.0.21, .22, … (scripts/libvirt_host.py) with its own compute worker named
``<COMPUTE_HOST>-1`` …, state directory and console address; one host drives the system's libvirtd.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from demo_network import DemoNetwork  # scripts/ is this script's directory
from libvirt_host import HostError, LibvirtHost
from supervision import Supervisor, programs_for

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("CLOUD_STATE_DIR", ROOT / "var"))
PYTHON = str(ROOT / ".venv" / "bin" / "python")
API = os.environ.get("CLOUD_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
COMPUTE = f"{API}/compute/v2.1"
HEADERS = {"OpenStack-API-Version": "compute 2.47"}
MAX_DEMO_HOSTS = 9  # 127.0.0.21 .. 127.0.0.29


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


def secret(name: str) -> str:
    """The secret from the environment, else the one generated on the first run and kept (0600) in
    ``<state>/secrets/``: the demo runs the cloud in production mode, which requires its secrets."""
    if os.environ.get(name):
        return os.environ[name]
    path = STATE / "secrets" / name.lower()
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("COMPUTE_HOST", socket.gethostname())
    env["DJANGO_SECRET_KEY"] = secret("DJANGO_SECRET_KEY")
    env["CONSOLEAUTH_SECRET"] = secret("CONSOLEAUTH_SECRET")
    env["CLOUD_SIGNING_KEY"] = secret("CLOUD_SIGNING_KEY")
    env.setdefault("COMPUTE_CREDENTIALS", str(STATE / "secrets" / f"compute-{env['COMPUTE_HOST']}.json"))
    env.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")
    env.setdefault("COMPUTE_METADATA_URL", f"{API}/internal/metadata")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_broker(env: dict[str, str]) -> subprocess.Popen | None:
    """A Redis of the demo's own that asks for a password (unless CELERY_BROKER_URL names a broker): the
    broker is how every process reaches every other, so nothing unauthenticated may talk to it."""
    if env.get("CELERY_BROKER_URL"):
        return None
    port = int(env.get("DEMO_BROKER_PORT", "6390"))
    password = secret("BROKER_PASSWORD")
    directory = STATE / "redis"
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    conf = directory / "redis.conf"
    conf.touch(mode=0o600)
    conf.chmod(0o600)  # it holds the password, which is kept off the command line
    conf.write_text(f'bind 127.0.0.1\nport {port}\nrequirepass {password}\nsave ""\nappendonly no\ndir {directory}\n')
    say(f"starting the demo's broker (Redis with a password) on 127.0.0.1:{port}")
    broker = subprocess.Popen(["redis-server", str(conf)], stdout=subprocess.DEVNULL, start_new_session=True)
    env["CELERY_BROKER_URL"] = f"redis://:{password}@127.0.0.1:{port}/0"

    def answers() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            return b"+PONG" in sock.recv(64)

    wait_for("the broker", lambda: _quietly(answers), 15)
    return broker


def _quietly(check) -> bool:
    try:
        return check()
    except OSError:
        return False


def start_local_cinder(env: dict[str, str]):
    """DEMO_CINDER=1: a Cinder on this machine (NFS on var/cinder, RabbitMQ) for volumes, on port 8776."""
    from local_cinder import CinderService  # scripts/ is this script's directory

    work = STATE / "cinder"
    work.mkdir(parents=True, exist_ok=True)
    say("starting a local Cinder for volumes (DEMO_CINDER=1)")
    service = CinderService(work, port=int(env.get("DEMO_CINDER_PORT", "8776"))).start()
    env["CINDER_ENDPOINT"] = service.endpoint
    env["COMPUTE_NFS_MOUNT_POINT_BASE"] = str(service.mount_point_base)
    say(f"Cinder at {service.endpoint} (noauth; volumes are files in {service.export_dir})")
    return service


def manage(env, *args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, check=True)


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")


def server_by_name(session, name: str) -> dict | None:
    servers = session.get(f"{COMPUTE}/servers/detail", params={"name": f"^{name}$"}, timeout=10).json()["servers"]
    return servers[0] if servers else None


# The demo guest is busybox: its user data (run from the config drive) serves a page on port 80.
USER_DATA = """#!/bin/sh
mkdir -p /run/www
echo "Hello from $(hostname), a guest of the demo cloud" > /run/www/index.html
httpd -p 80 -h /run/www
"""


def boot_demo(session, name: str, networks, hosts: list[str], host: str | None = None) -> dict:
    """``name`` on ``networks`` (the compute API's ``networks``), booted on ``host`` when given (an admin
    may name the host from microversion 2.74). One that exists is started again; one in ERROR, on none of
    the running ``hosts`` (an earlier demo's with other hosts) or not on the networks asked for (an older
    demo's) is replaced."""
    server = server_by_name(session, name)
    wanted = {n["uuid"] for n in networks} if isinstance(networks, list) else None
    if server is not None and (
        server["status"] == "ERROR"
        or server.get("OS-EXT-SRV-ATTR:host") not in hosts
        or not _on_networks(session, server, wanted)
    ):
        say(f"{name} is in ERROR, on another host or not on the demo's networks; deleting it and booting anew")
        session.delete(f"{COMPUTE}/servers/{server['id']}", timeout=30)
        wait_for(f"{name} to be deleted", lambda: server_by_name(session, name) is None, 120)
        server = None
    if server is None:
        image = session.get(f"{API}/image/v2/images", params={"name": "demo"}, timeout=10).json()["images"][0]
        say(f"booting {name}{f' on {host}' if host else ''}")
        body = {
            "server": {
                "name": name,
                "imageRef": image["id"],
                "flavorRef": "1",
                "networks": networks,
                "config_drive": True,
                "user_data": base64.b64encode(USER_DATA.encode()).decode(),
            }
        }
        headers = {}
        if host:
            body["server"]["host"] = host
            headers = {"OpenStack-API-Version": "compute 2.74"}
        response = session.post(f"{COMPUTE}/servers", json=body, headers=headers, timeout=30)
        if not response.ok:
            raise SystemExit(f"booting {name} failed: {response.status_code} {response.text[:500]}")
        server_id = response.json()["server"]["id"]
    else:
        server_id = server["id"]
        if server["status"] == "SHUTOFF":
            say(f"starting {name} again")
            session.post(
                f"{COMPUTE}/servers/{server_id}/action", json={"os-start": None}, timeout=30
            ).raise_for_status()

    def active():
        body = session.get(f"{COMPUTE}/servers/{server_id}", timeout=10).json()["server"]
        if body["status"] == "ERROR":
            raise SystemExit(f"{name} failed: {body.get('fault', {}).get('message')}")
        return body["status"] == "ACTIVE"

    wait_for(f"{name} to become ACTIVE", active, 300)
    return session.get(f"{COMPUTE}/servers/{server_id}", timeout=10).json()["server"]


def _on_networks(session, server: dict, wanted: set[str] | None) -> bool:
    ports = session.get(f"{API}/networking/v2.0/ports", params={"device_id": server["id"]}, timeout=10).json()
    have = {p["network_id"] for p in ports.get("ports", [])}
    return bool(have) and (wanted is None or have == wanted)


def allow_web(session, server: dict) -> None:
    """Put the server's ports in the security group ``web`` (ICMP, SSH and HTTP from this machine's range,
    which demo_setup makes), as a cloud user would to reach a guest: its project's default group admits
    only the group's own members."""
    net = f"{API}/networking/v2.0"
    groups = session.get(f"{net}/security-groups", params={"name": "web"}, timeout=10).json()["security_groups"]
    if not groups:
        raise SystemExit("the demo's security group 'web' is missing (manage.py demo_setup makes it)")
    ports = session.get(f"{net}/ports", params={"device_id": server["id"]}, timeout=10).json()["ports"]
    for port in ports:
        if groups[0]["id"] in port["security_groups"]:
            continue
        wanted = [*port["security_groups"], groups[0]["id"]]
        response = session.put(f"{net}/ports/{port['id']}", json={"port": {"security_groups": wanted}}, timeout=10)
        if not response.ok:
            raise SystemExit(
                f"putting {server['name']} in group web failed: {response.status_code} {response.text[:300]}"
            )


def floating_ip_for(session, server: dict, network: str) -> str:
    """A floating address of ``network`` for the server's port: the one it has, else a free one of the
    project's, else a new one (``openstack floating ip create`` and ``server add floating ip``)."""
    net = f"{API}/networking/v2.0"
    ports = session.get(f"{net}/ports", params={"device_id": server["id"]}, timeout=10).json()["ports"]
    if not ports:
        raise SystemExit(f"{server['name']} has no port for a floating IP")
    port_id = ports[0]["id"]
    held = session.get(f"{net}/floatingips", params={"port_id": port_id}, timeout=10).json()["floatingips"]
    if held:
        return held[0]["floating_ip_address"]
    mine = session.get(f"{net}/floatingips", params={"floating_network_id": network}, timeout=10).json()
    free = [f for f in mine["floatingips"] if f["port_id"] is None]
    if free:
        response = session.put(
            f"{net}/floatingips/{free[0]['id']}", json={"floatingip": {"port_id": port_id}}, timeout=10
        )
    else:
        body = {"floatingip": {"floating_network_id": network, "port_id": port_id}}
        response = session.post(f"{net}/floatingips", json=body, timeout=10)
    if not response.ok:
        raise SystemExit(f"a floating IP for {server['name']}: {response.status_code} {response.text[:300]}")
    return response.json()["floatingip"]["floating_ip_address"]


def network_id(session, name: str) -> str:
    found = session.get(f"{API}/networking/v2.0/networks", params={"name": name}, timeout=10).json()["networks"]
    if not found:
        raise SystemExit(f"the demo's network {name!r} is missing (manage.py demo_setup makes it)")
    return found[0]["id"]


def addresses_of(server: dict, network: str) -> list[str]:
    return [a["addr"] for a in server.get("addresses", {}).get(network, []) if a.get("version", 4) == 4]


def reachable(address: str, timeout: float) -> tuple[bool, str]:
    """Whether the guest at ``address`` (on public) answers ping and serves its page, from this machine."""
    deadline = time.monotonic() + timeout
    pinged = False
    page = ""
    while time.monotonic() < deadline and not page:
        pinged = pinged or subprocess.run(["ping", "-c", "1", "-W", "1", address], capture_output=True).returncode == 0
        if pinged:
            try:
                page = requests.get(f"http://{address}/", timeout=2).text.strip()
            except requests.RequestException:
                time.sleep(1)
        else:
            time.sleep(1)
    return pinged, page


def stop_running_servers(session) -> None:
    servers = session.get(f"{COMPUTE}/servers/detail", timeout=10).json()["servers"]
    running = [s for s in servers if s["status"] in ("ACTIVE", "REBOOT", "HARD_REBOOT")]
    for server in running:
        say(f"stopping {server['name']}")
        session.post(f"{COMPUTE}/servers/{server['id']}/action", json={"os-stop": None}, timeout=30)
    for server in running:
        wait_for(
            f"{server['name']} to stop",
            lambda s=server: (
                session.get(f"{COMPUTE}/servers/{s['id']}", timeout=10).json()["server"]["status"]
                in ("SHUTOFF", "ERROR")
            ),
            120,
        )


def destroy_leftover_domains() -> None:
    """Safety net: no domain of ours keeps running once the cloud that manages it is gone."""
    try:
        import libvirt
    except ImportError:
        return
    uri = os.environ.get("COMPUTE_LIBVIRT_URI", "qemu:///system")
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError:
        return
    for domain in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        # Only the demo's own: their disks are under its state directory (another cloud, or a test run,
        # may share this libvirtd).
        if domain.name().startswith("instance-") and str(STATE.resolve()) in domain.XMLDesc(0):
            say(f"destroying leftover domain {domain.name()}")
            domain.destroy()
    conn.close()


def main() -> int:
    env = environment()
    os.chdir(ROOT)
    say("migrating the database")
    manage(env, "migrate", "--noinput", "-v0")
    manage(env, "collectstatic", "--noinput", "-v0")
    manage(env, "demo_setup")
    password = (STATE / "secrets" / "admin_password").read_text().strip()
    keystone = ""
    if env.get("KEYSTONE_AUTH_URL"):
        say(f"registering compute and image in the Keystone catalog at {env['KEYSTONE_AUTH_URL']}")
        manage(env, "register_catalog")
        keystone = keystone_summary(env)
    else:
        keystone = builtin_identity_openrc(password)

    cinder = start_local_cinder(env) if env.get("DEMO_CINDER") == "1" else None
    broker = start_broker(env)
    names = host_names(env)
    network = DemoNetwork(
        STATE,
        names,
        public_cidr=env.get("DEMO_PUBLIC_CIDR", "10.253.0.0/24"),
        tenant_cidr=env.get("DEMO_TENANT_CIDR", "10.0.0.0/24"),
        masquerade=env.get("DEMO_PUBLIC_MASQUERADE", "0") == "1",
    )
    libvirt_hosts: list[LibvirtHost] = []
    try:
        say(f"making bridge br-public ({network.gateway}) and the demo's routes on this machine")
        network_settings = network.start()
        compute_hosts = start_hosts(env, libvirt_hosts, names)
        for name, settings in compute_hosts.items():
            settings.update(network_settings[name])
    except (HostError, subprocess.CalledProcessError, RuntimeError) as exc:
        for host in libvirt_hosts:
            host.stop()
        network.stop()
        if broker is not None:
            broker.terminate()
        raise SystemExit(f"could not start the hypervisor hosts or their network: {exc}") from None

    say(f"starting api, conductor, beat, consoleproxy and compute for {', '.join(compute_hosts)} under supervisord")
    supervisor = Supervisor(programs_for(ROOT / "Procfile", compute_hosts), STATE / "log", env).start()
    session = requests.Session()
    session.auth = ("admin", password)
    session.headers.update(HEADERS)
    stopping = False
    failed: list[SystemExit] = []

    def shutdown(*_):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        say("stopping")
        try:
            stop_running_servers(session)
        except (requests.RequestException, SystemExit) as exc:
            say(f"could not stop servers through the API: {exc}")
        supervisor.stop()
        if libvirt_hosts:
            for host in libvirt_hosts:
                host.stop()  # its QEMUs too
        else:
            destroy_leftover_domains()
        say("removing br-public, the demo's routes and its hosts' networks")
        network.stop()
        if cinder is not None:
            cinder.stop()
        if broker is not None:
            broker.terminate()
        say("stopped")
        sys.exit(1 if failed else 0)

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)

    try:
        wait_for("the API", lambda: requests.get(f"{API}/compute/", timeout=2).ok, 60)
        wait_for("every compute host's first heartbeat", lambda: _hosts_up(env, list(compute_hosts)), 90)
        first, last = (names[0], names[-1]) if libvirt_hosts else (None, None)
        public_id = network_id(session, "public")
        server = boot_demo(session, "demo-1", [{"uuid": public_id}], names, first)
        allow_web(session, server)
        second = None
        if env.get("DEMO_SECOND_VM", "1") == "1":
            second = boot_demo(session, "demo-2", "auto", names, last)
            allow_web(session, second)
            floating = floating_ip_for(session, second, public_id)
        address = (addresses_of(server, "public") or ["?"])[0]
        say(f"waiting for demo-1 to take {address} by DHCP and serve its page")
        pinged, page = reachable(address, 120)
        if second is not None:
            say(f"waiting for demo-2 to answer at its floating IP {floating}, through demo-router")
            second_pinged, second_page = reachable(floating, 120)
    except SystemExit as exc:
        if stopping:  # Ctrl-C while starting
            raise
        say(f"the demo could not start: {exc}")
        failed.append(exc)
        shutdown()
    console = session.post(
        f"{COMPUTE}/servers/{server['id']}/action",
        json={"os-getVNCConsole": {"type": "novnc"}},
        headers={"OpenStack-API-Version": "compute 2.1"},
        timeout=10,
    ).json()["console"]["url"]
    second_line = (
        f"  demo-2        {second['id']} ({second['status']}) on demo-net: "
        f"{', '.join(addresses_of(second, 'demo-net')) or '?'}, floating IP {floating} through demo-router "
        f"(ping {'answered' if second_pinged else 'did not answer'}; "
        f"curl http://{floating}/ → {second_page or 'no page yet'})\n"
        if second is not None
        else ""
    )
    volumes = f"  Volumes       {API}/volumes/ (Cinder at {cinder.endpoint}, noauth)\n" if cinder is not None else ""
    hosts = "".join(
        f"  Host          {name}"
        + (
            f" (libvirtd {settings['COMPUTE_LIBVIRT_URI']}, VNC on {settings['COMPUTE_VNC_LISTEN']})"
            if libvirt_hosts
            else ""
        )
        + "\n"
        for name, settings in compute_hosts.items()
    )
    print(
        f"""
  The cloud is running. Ctrl-C stops it (and the VMs).

  Portal        {API}/            (admin: {API}/admin/)
  Compute API   {COMPUTE}
  Image API     {API}/image/v2
  Credentials   admin / {password}   (HTTP Basic for the APIs)
{hosts}  demo-1        {server["id"]} ({server["status"]}) on public: {address}
                ping {address}          {"answers" if pinged else "no answer yet"}
                curl http://{address}/  {repr(page) if page else "no page yet"}
{second_line}{network.describe()}  Console       {console}
                (valid for 10 minutes; the portal's Console button makes a new one)
  Logs          {STATE / "log"}/<process>.log   (a process that dies is started again)
{volumes}{keystone}""",
        flush=True,
    )
    # Poll rather than wait(): a blocking wait() holds the lock the Ctrl-C handler needs to reap supervisord.
    while supervisor.alive():
        time.sleep(0.5)
    return supervisor.popen.returncode or 0


def host_names(env: dict[str, str]) -> list[str]:
    """The demo's hypervisor hosts: ``COMPUTE_HOST``, or ``<COMPUTE_HOST>-1`` … with ``DEMO_HOSTS=N``."""
    raw = env.get("DEMO_HOSTS", "1").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DEMO_HOSTS:
        raise SystemExit(f"DEMO_HOSTS={raw!r}: give a number of hosts from 1 to {MAX_DEMO_HOSTS}")
    count = int(raw)
    if count == 1:
        return [env["COMPUTE_HOST"]]
    return [f"{env['COMPUTE_HOST']}-{number}" for number in range(1, count + 1)]


def start_hosts(env: dict[str, str], libvirt_hosts: list[LibvirtHost], names: list[str]) -> dict[str, dict[str, str]]:
    """Enroll the demo's hypervisor hosts and return each one's compute worker settings. One host (the
    default) is ``COMPUTE_HOST`` on the system's libvirtd; with ``DEMO_HOSTS=N`` each of the N gets a private
    libvirtd on 127.0.0.21, .22, …, appended to ``libvirt_hosts`` as it starts."""
    count = len(names)
    if count == 1:
        say(f"enrolling compute host {env['COMPUTE_HOST']}")
        manage(env, "host_enroll", env["COMPUTE_HOST"], "--output", env["COMPUTE_CREDENTIALS"], "--routers")
        return {env["COMPUTE_HOST"]: {"COMPUTE_CREDENTIALS": env["COMPUTE_CREDENTIALS"]}}
    hosts = {}
    for number in range(1, count + 1):
        name, address = f"{env['COMPUTE_HOST']}-{number}", f"127.0.0.{20 + number}"
        directory = STATE / "libvirt" / name
        directory.mkdir(parents=True, exist_ok=True)
        say(f"starting a private libvirtd for {name} on {address}")
        host = LibvirtHost(directory, address)
        libvirt_hosts.append(host.start())
        credentials = STATE / "secrets" / f"compute-{name}.json"
        say(f"enrolling compute host {name} (console at {address})")
        manage(env, "host_enroll", name, "--output", str(credentials), "--console-address", address, "--routers")
        hosts[name] = {**host.environment(), "COMPUTE_CREDENTIALS": str(credentials)}
    return hosts


def openrc_variables(env) -> dict[str, str]:
    """The `openstack` CLI's environment for the Keystone credentials the cloud was given."""
    return {
        "OS_AUTH_URL": env["KEYSTONE_AUTH_URL"],
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": env.get("KEYSTONE_USERNAME", ""),
        "OS_PASSWORD": env.get("KEYSTONE_PASSWORD", ""),
        "OS_PROJECT_NAME": env.get("KEYSTONE_PROJECT_NAME", ""),
        "OS_USER_DOMAIN_NAME": env.get("KEYSTONE_USER_DOMAIN_NAME", "Default"),
        "OS_PROJECT_DOMAIN_NAME": env.get("KEYSTONE_PROJECT_DOMAIN_NAME", "Default"),
        "OS_REGION_NAME": env.get("KEYSTONE_REGION_NAME", "RegionOne"),
        "OS_INTERFACE": "public",
    }


def keystone_summary(env) -> str:
    """Writes <state>/openrc (mode 0600, it holds the password) and says how to use it."""
    variables = openrc_variables(env)
    path = STATE / "openrc"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()))
    shown = "\n".join(
        f"                export {name}={'<KEYSTONE_PASSWORD>' if name == 'OS_PASSWORD' else shlex.quote(value)}"
        for name, value in variables.items()
    )
    return f"""
  Keystone      {variables["OS_AUTH_URL"]}  (compute and image are in its catalog)
  openrc        source {path}
{shown}
                then: openstack server create --image demo --flavor m1.tiny --wait vm1
                      openstack console url show vm1
"""


def builtin_identity_openrc(password: str) -> str:
    """Writes <state>/openrc and <state>/clouds.yaml (0600) for ``admin`` at the cloud's own identity API."""
    variables = {
        "OS_AUTH_URL": f"{API}/identity/v3",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_USERNAME": "admin",
        "OS_PASSWORD": password,
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": "RegionOne",
        "OS_INTERFACE": "public",
    }
    clouds = (
        "clouds:\n  demo:\n    auth:\n"
        + "".join(
            f"      {key}: {json.dumps(variables[name])}\n"
            for key, name in (
                ("auth_url", "OS_AUTH_URL"),
                ("username", "OS_USERNAME"),
                ("password", "OS_PASSWORD"),
                ("project_name", "OS_PROJECT_NAME"),
                ("user_domain_name", "OS_USER_DOMAIN_NAME"),
                ("project_domain_name", "OS_PROJECT_DOMAIN_NAME"),
            )
        )
        + '    region_name: RegionOne\n    interface: public\n    identity_api_version: "3"\n'
    )
    files = {
        STATE / "openrc": "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items()),
        STATE / "clouds.yaml": clouds,
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(text)
    return f"""
  Identity      {variables["OS_AUTH_URL"]}  (built in; clouds.yaml: {STATE / "clouds.yaml"}, cloud "demo")
  openrc        source {STATE / "openrc"}
                then: openstack server list
                      openstack network list
                      openstack server create --image demo --flavor m1.tiny --network public --wait vm1
"""


def _hosts_up(env, names: list[str]) -> bool:
    query = (
        "from portal.models import ComputeHost; "
        f"print(ComputeHost.objects.filter(name__in={names!r}).exclude(last_heartbeat=None).count() == {len(names)})"
    )
    out = subprocess.run(
        [
            PYTHON,
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            query,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() == "True"


if __name__ == "__main__":
    sys.exit(main())
