"""Create what the single-machine demo needs; running it again changes nothing that exists."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal.auth.context import RequestContext
from portal.models import Flavor, Image, Membership, Network, Port, Project, Role, Router, SecurityGroup, Subnet
from portal.services import networks as network_services
from portal.services import routers as router_services
from portal.services import security_groups as group_services
from portal.services.images import image_create, image_upload
from portal.services.network_errors import NetworkError, SecurityGroupRuleExists

WEB_GROUP = "web"  # the demo guest on public is in it
ROUTER = "demo-router"  # demo-net's way out, with its gateway on public
DEFAULT_FLAVORS = [
    # flavorid, name, vcpus, memory_mb, root_gb
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
]


class Command(BaseCommand):
    help = "Create the admin user and project, the default flavors and the demo image."

    def add_arguments(self, parser):
        parser.add_argument("--image", default=str(settings.BASE_DIR / "var" / "images" / "demo.qcow2"))
        parser.add_argument(
            "--password",
            default=os.environ.get("PORTAL_ADMIN_PASSWORD") or None,
            help="admin password (default: PORTAL_ADMIN_PASSWORD, else keep the current one, else generate)",
        )
        parser.add_argument("--password-file", default=str(settings.STATE_DIR / "secrets" / "admin_password"))
        parser.add_argument(
            "--public-cidr",
            default=os.environ.get("DEMO_PUBLIC_CIDR", "10.253.0.0/24"),
            help="the subnet of the shared flat network 'public'; its first address is the demo bridge's",
        )
        parser.add_argument(
            "--tenant-cidr",
            default=os.environ.get("DEMO_TENANT_CIDR", "10.0.0.0/24"),
            help="the subnet of the admin project's VXLAN network 'demo-net'",
        )

    def handle(self, *args, image: str, password: str | None, password_file: str, **options):
        user, project = self._admin(password, Path(password_file))
        self._flavors()
        self._image(Path(image), RequestContext(user=user, project=project, role=Role.ADMIN))
        try:
            public, demo = self._networks(project, options["public_cidr"], options["tenant_cidr"])
            self._router(project, public, demo)
            self._web_group(project, options["public_cidr"])
        except NetworkError as exc:
            raise CommandError(f"the demo's networks: {exc}") from None

    @transaction.atomic
    def _networks(self, project: Project, public_cidr: str, tenant_cidr: str):
        """``public``: shared and external, flat on physical network ``public`` (the demo's bridge
        ``br-public``, whose address is the subnet's gateway); ``demo-net``: the admin project's own VXLAN
        network, the one ``networks: auto`` picks."""
        public = Network.objects.filter(name="public", shared=True, network_type=Network.Type.FLAT).first()
        if public is None:
            public = network_services.network_create(
                project=project,
                user_is_admin=True,
                name="public",
                shared=True,
                external=True,
                network_type=Network.Type.FLAT,
                physical_network="public",
            )
        elif not public.external:  # an older demo's
            public = network_services.network_update(
                network=public, user_is_admin=True, changes={"router:external": True}
            )
        self._subnet(project, public, "public-subnet", public_cidr)
        demo = Network.objects.filter(project=project, name="demo-net").first()
        if demo is None:
            demo = network_services.network_create(
                project=project, user_is_admin=True, name="demo-net", network_type=Network.Type.VXLAN,
                auto_allocated=True,
            )  # fmt: skip
        self._subnet(project, demo, "demo-subnet", tenant_cidr)
        for network in (public, demo):
            cidrs = ", ".join(Subnet.objects.filter(network=network).values_list("cidr", flat=True))
            self.stdout.write(f"network {network.name}: {network.pk} ({network.network_type}, {cidrs})")
        return public, demo

    @transaction.atomic
    def _router(self, project: Project, public: Network, demo: Network) -> None:
        """``demo-router``: demo-net's subnet behind it, its gateway on public (translated to its address
        there), as a cloud user makes one to let a private network out and reach it by floating IPs."""
        router = Router.objects.filter(project=project, name=ROUTER).first()
        if router is None:
            router = router_services.router_create(
                project=project,
                user_is_admin=True,
                name=ROUTER,
                external_gateway_info={"network_id": str(public.pk)},
            )
        for subnet in Subnet.objects.filter(network=demo):
            attached = Port.objects.filter(
                device_id=str(router.pk), device_owner=Port.OWNER_ROUTER_INTERFACE, fixed_ips__subnet=subnet
            )
            if not attached.exists():
                router_services.router_add_interface(
                    router=router, project=project, user_is_admin=True, subnet_id=str(subnet.pk)
                )
        self.stdout.write(f"router {ROUTER}: {router.pk} (demo-net behind it, its gateway on public)")

    @transaction.atomic
    def _web_group(self, project: Project, public_cidr: str) -> None:
        """The security group ``web``: ICMP, SSH and HTTP from ``public``'s range (this machine's), as a cloud
        user adds to reach a guest; the demo puts ``demo-1`` in it (the default group admits its members
        only)."""
        group = SecurityGroup.objects.filter(project=project, name=WEB_GROUP).first()
        if group is None:
            group = group_services.group_create(
                project=project, name=WEB_GROUP, description="ICMP, SSH and HTTP from public"
            )
        for extra in (
            {"protocol": "icmp"},
            *({"protocol": "tcp", "port_range_min": p, "port_range_max": p} for p in (22, 80)),
        ):
            with contextlib.suppress(SecurityGroupRuleExists):
                group_services.rule_create(
                    project=project,
                    group=group,
                    attrs={"direction": "ingress", "remote_ip_prefix": public_cidr, **extra},
                    remote_group=None,
                )
        self.stdout.write(f"security group {WEB_GROUP}: {group.pk} (ICMP, SSH and HTTP from {public_cidr})")

    def _subnet(self, project: Project, network: Network, name: str, cidr: str) -> None:
        if Subnet.objects.filter(network=network).exists():
            return
        network_services.subnet_create(project=project, user_is_admin=True, network=network, name=name, cidr=cidr)

    @transaction.atomic
    def _admin(self, password: str | None, password_file: Path):
        User = get_user_model()  # noqa: N806
        user, created = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
        if password is None and (created or not password_file.exists()):
            password = secrets.token_urlsafe(12)
        if password is not None:  # otherwise keep the one already set
            user.set_password(password)
            user.is_staff = user.is_superuser = True
            user.save()
            password_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # 0600 from the moment the file exists (and before the password is in it), not after.
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(password)
        project, _ = Project.objects.get_or_create(name="admin", defaults={"description": "The cloud's operators"})
        Membership.objects.get_or_create(user=user, project=project, defaults={"role": Role.ADMIN})
        self.stdout.write(f"admin user ready in project {project.name} ({project.id})")
        return user, project

    def _flavors(self):
        for flavorid, name, vcpus, memory_mb, root_gb in DEFAULT_FLAVORS:
            Flavor.objects.get_or_create(
                name=name,
                defaults={"flavorid": flavorid, "vcpus": vcpus, "memory_mb": memory_mb, "root_gb": root_gb},
            )
        self.stdout.write("flavors: " + ", ".join(Flavor.objects.values_list("name", flat=True)))

    def _image(self, path: Path, ctx: RequestContext):
        if not path.exists():
            raise CommandError(f"{path} does not exist: build it with scripts/build_demo_image.sh")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        existing = Image.objects.filter(name="demo", status=Image.Status.ACTIVE, os_hash_value=digest).first()
        if existing is not None:
            self.stdout.write(f"image demo: {existing.id} (unchanged)")
            return
        image = image_create(
            ctx=ctx,
            name="demo",
            disk_format="qcow2",
            container_format="bare",
            visibility="public",
            min_disk=1,
        )
        with path.open("rb") as stream:
            image_upload(image=image, stream=stream)
        self.stdout.write(f"image demo: {image.id} (uploaded {path.stat().st_size} bytes)")
