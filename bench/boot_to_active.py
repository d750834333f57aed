"""Boot latency of a real VM: from ``POST /servers`` to ACTIVE, and to the guest's banner.

Starts its own cloud (api under gunicorn, conductor, one compute host on qemu:///system) on a scratch
SQLite database and Redis database 7, boots the demo image once to warm the host's image cache, then
times ``--runs`` boots one after another. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
HOST = "bench-host"
BANNER = b"Welcome to the cloud demo guest"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what}")


class Cloud:
    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            # Debug mode, as the published figures were measured (it was the default then); it also
            # generates the secrets production mode would require into the run's state dir.
            "CLOUD_DEBUG": "1",
            "CLOUD_STATE_DIR": str(work),
            "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
            "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7"),
            "CLOUD_PUBLIC_URL": self.url,
            "DJANGO_SETTINGS_MODULE": "portal.settings.base",
            "PORTAL_ADMIN_PASSWORD": "bench-password",
            "COMPUTE_HOST": HOST,
            "COMPUTE_STATE_DIR": str(work / "compute"),
            "COMPUTE_HEARTBEAT_INTERVAL": "1",
        }
        self.procs: list[subprocess.Popen] = []

    def manage(self, *args: str) -> None:
        subprocess.run(
            [str(BIN / "python"), "manage.py", *args], cwd=ROOT, env=self.env, check=True, stdout=subprocess.DEVNULL
        )

    def spawn(self, name: str, argv: list[str]) -> None:
        log = (self.work / f"{name}.log").open("wb")
        self.procs.append(
            subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )

    def start(self) -> None:
        import redis

        redis.Redis.from_url(self.env["CELERY_BROKER_URL"]).flushdb()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("demo_setup")
        self.manage("host_enroll", HOST, "--output", str(self.work / "compute" / "credentials.json"))
        celery = str(BIN / "celery")
        self.spawn(
            "api",
            [
                str(BIN / "gunicorn"),
                "portal.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "2",
                "--threads",
                "4",
            ],
        )
        self.spawn(
            "conductor",
            [
                celery,
                "-A",
                "portal",
                "worker",
                "-Q",
                "conductor",
                "-n",
                "conductor@bench",
                "--concurrency",
                "2",
                "--without-mingle",
                "--without-gossip",
            ],
        )
        self.spawn(
            "compute",
            [
                celery,
                "-A",
                "compute_tasks.worker",
                "worker",
                "-Q",
                f"compute.{HOST}",
                "-n",
                f"compute@{HOST}",
                "--pool",
                "threads",
                "--concurrency",
                "4",
                "--without-mingle",
                "--without-gossip",
            ],
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    subprocess.run([str(ROOT / "scripts" / "build_demo_image.sh")], check=True, stdout=subprocess.DEVNULL)

    with tempfile.TemporaryDirectory(prefix="bench-boot-") as tmp:
        cloud = Cloud(Path(tmp))
        cloud.start()
        try:
            api = requests.Session()
            api.auth = ("admin", "bench-password")
            api.headers["OpenStack-API-Version"] = "compute 2.47"
            compute = f"{cloud.url}/compute/v2.1"
            wait(lambda: _ok(api, f"{compute}/flavors"), 60, "the API")
            image = api.get(f"{cloud.url}/image/v2/images", params={"name": "demo"}, timeout=10).json()["images"][0]

            def boot(name: str) -> tuple[float, float]:
                body = {"server": {"name": name, "imageRef": image["id"], "flavorRef": "1", "networks": "none"}}
                start = time.monotonic()
                response = api.post(f"{compute}/servers", json=body, timeout=30)
                response.raise_for_status()
                server_id = response.json()["server"]["id"]

                def status():
                    server = api.get(f"{compute}/servers/{server_id}", timeout=10).json()["server"]
                    if server["status"] == "ERROR":
                        raise SystemExit(f"boot failed: {server.get('fault')}")
                    return server["status"] == "ACTIVE"

                wait(status, 300, "ACTIVE")
                active = time.monotonic() - start
                log = Path(tmp) / "compute" / "instances" / server_id / "console.log"
                wait(lambda: log.exists() and BANNER in log.read_bytes(), 120, "the banner", interval=0.02)
                banner = time.monotonic() - start
                api.delete(f"{compute}/servers/{server_id}", timeout=30)
                wait(lambda: api.get(f"{compute}/servers/{server_id}", timeout=10).status_code == 404, 120, "delete")
                return active, banner

            # Warm-up: waits for the host's first heartbeat and fills the image cache.
            wait(lambda: _host_ready(cloud), 60, "the compute host")
            boot("warm-up")
            results = [boot(f"bench-{n}") for n in range(args.runs)]
        finally:
            cloud.stop()

    actives = [round(a, 3) for a, _ in results]
    banners = [round(b, 3) for _, b in results]
    print(
        json.dumps(
            {
                "scenario": "boot_to_active",
                "image": "demo (cached)",
                "virt": "qemu:///system, TCG",
                "runs": len(results),
                "active_median_s": round(statistics.median(actives), 3),
                "banner_median_s": round(statistics.median(banners), 3),
                "active_s": actives,
                "banner_s": banners,
            }
        )
    )
    return 0


def _ok(api, url) -> bool:
    try:
        return api.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _host_ready(cloud: Cloud) -> bool:
    out = subprocess.run(
        [
            str(BIN / "python"),
            "manage.py",
            "shell",
            "--no-imports",
            "-c",
            "from portal.models import ComputeHost; print(ComputeHost.objects.exclude(last_heartbeat=None).exists())",
        ],
        cwd=ROOT,
        env=cloud.env,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() == "True"


if __name__ == "__main__":
    sys.exit(main())
