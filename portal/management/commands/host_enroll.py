"""``manage.py host_enroll``: let a compute host speak to the cloud, or stop it from speaking.

    manage.py host_enroll NAME --output FILE [--console-address 10.0.0.5] [--routers | --no-routers]
    manage.py host_enroll 'sim-[0001-1000]' --output FILE      (many simulated hosts, one file)
    manage.py host_enroll NAME --revoke

Enrolling writes FILE (mode 0600) with the host's new private key and the control plane's public key;
copy it to the host and point ``COMPUTE_CREDENTIALS`` at it. The cloud keeps only the public half, so a
lost file means enrolling again, which revokes the old key. ``--console-address`` is the one address the
host's consoles may be reached at (the console proxy connects nowhere else for its instances).
``--routers`` trusts the host with routers: the control plane may run any project's routers there, so
their routed traffic (and their floating IPs' translations) cross it; ``--no-routers`` takes that back
(its routers move elsewhere). Neither: as it was (a new host runs none).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from compute_tasks import signing
from compute_tasks.config import ConfigError, parse_host_list
from compute_tasks.signing import HostCredentials
from portal.models import ComputeHost
from portal.services import host_trust


class Command(BaseCommand):
    help = "Enroll compute hosts (write their credentials) or revoke their credentials."

    def add_arguments(self, parser):
        parser.add_argument("hosts", help="a host name, or several: 'hv1,hv2' or 'sim-[001-100]'")
        parser.add_argument("--output", type=Path, help="where to write the credentials (mode 0600)")
        parser.add_argument("--console-address", default="127.0.0.1", help="where the hosts' consoles listen")
        parser.add_argument("--revoke", action="store_true", help="revoke the hosts' credentials instead")
        parser.add_argument(
            "--routers",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="trust the hosts with routers (other projects' routed traffic crosses them), or no longer",
        )

    def handle(self, *args, hosts: str, output: Path | None, console_address: str, revoke: bool, routers, **options):
        try:
            names = parse_host_list(hosts)
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        if not names:
            raise CommandError("name at least one host")
        if revoke:
            found = {host.name: host for host in ComputeHost.objects.filter(name__in=names)}
            for name in names:
                if name not in found:
                    raise CommandError(f"no host {name!r}")
                revoked = host_trust.host_credentials_revoke(host=found[name])
                self.stdout.write(f"{name}: {'revoked' if revoked else 'had no credentials to revoke'}")
            return
        if output is None:
            raise CommandError("--output FILE is required: the private keys are written there and nowhere else")
        keys = {name: signing.new_private_key() for name in names}
        try:
            host_trust.host_enroll_many(
                names=names,
                public_keys={name: signing.encode_public(key) for name, key in keys.items()},
                console_address=console_address,
                runs_routers=routers,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        HostCredentials.write(output, keys=keys, control_plane_public_key=host_trust.control_plane_public_key())
        self.stdout.write(f"enrolled {len(names)} host(s); credentials in {output}")
