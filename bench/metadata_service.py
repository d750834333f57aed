"""The metadata service's control-plane end: what a guest's request costs once its host signed it.

Starts the API under gunicorn in production settings (``bench/support/cloud.py``) on a PostgreSQL server of
its own, with one enrolled host that has a guest on a network. ``--clients`` threads then ask for that
guest's ``openstack/latest/meta_data.json`` back to back as the host's metadata agent does (each request
signed with the host's key, a new nonce each), ``--requests`` in all. Every request verifies an Ed25519
signature, records its nonce, finds the port and the instance and renders the document. The figures are
requests per second, per CPU-second of the API (and of the API plus PostgreSQL), and the latency.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import requests

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.support.cloud import ROOT, Cloud, load_average  # noqa: E402
from bench.support.load import drive  # noqa: E402
from compute_tasks import metadata_content, signing  # noqa: E402

BROKER_URL = "redis://127.0.0.1:6379/15"
HOST = "sim-0001"
ADDRESS = "10.129.0.11"

GUEST = f"""
import base64
from django.contrib.auth import get_user_model
from portal.models import ComputeHost, Instance, IPAllocation, Network, Port, Project, Subnet
project = Project.objects.get(name="admin")
user = get_user_model().objects.get(username="admin")
host = ComputeHost.objects.get(name={HOST!r})
network = Network.objects.create(name="bench-metadata", project=project, segmentation_id=1999)
subnet = Subnet.objects.create(network=network, project=project, cidr="10.129.0.0/24", gateway_ip="10.129.0.1")
instance = Instance.objects.create(
    name="guest", project=project, user=user, flavor_name="m1.tiny", vcpus=1, memory_mb=64, root_gb=1, host=host,
    vm_state="active", metadata={{"role": "bench"}}, user_data=base64.b64encode(b"#cloud-config\\n").decode(),
)
port = Port.objects.create(network=network, project=project, mac_address="fa:16:3e:00:00:11",
                           device_id=str(instance.uuid), device_owner="compute:nova", host=host)
IPAllocation.objects.create(port=port, subnet=subnet, ip_address={ADDRESS!r})
print(network.id, instance.uuid)
"""


def ask(cloud: Cloud, signer: signing.Signer, network_id: str, count: int, clients: int, expect: str) -> dict:
    path = "/openstack/latest/meta_data.json"

    def request(s: requests.Session) -> str | None:
        headers = metadata_content.signed_headers(
            signer, method="GET", path=path, network_id=network_id, address=ADDRESS
        )
        response = s.get(f"{cloud.url}/internal/metadata{path}", headers=headers, timeout=30)
        if response.status_code != 200 or json.loads(response.content).get("uuid") != expect:
            return f"{response.status_code} {response.text[:120]}"
        return None

    return {"requests": count, **drive(cloud, count=count, clients=clients, session=requests.Session, request=request)}


def run(args) -> dict:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-metadata-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # PostgreSQL's own user keeps its data directory in here
        cloud = Cloud(work, root=ROOT, broker_url=BROKER_URL, hosts=1)
        try:
            cloud.prepare()
            network_id, instance_uuid = cloud.manage("shell", "-c", GUEST).split()[-2:]
            signer = signing.HostCredentials.load(work / "compute" / "credentials.json").signer(HOST)
            cloud.start_api(workers=args.workers, threads=args.threads)
            ask(cloud, signer, network_id, min(50, args.requests), args.clients, instance_uuid)  # warm up
            measured = ask(cloud, signer, network_id, args.requests, args.clients, instance_uuid)
        finally:
            cloud.stop()
    return {
        "scenario": "metadata_service",
        "clients": args.clients,
        "gunicorn": f"{args.workers} workers x {args.threads} threads",
        **measured,
        "load_before": load_before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
