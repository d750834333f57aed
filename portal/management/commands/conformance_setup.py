"""``manage.py conformance_setup``: the accounts and flavors Tempest's compute API tests need here.

    manage.py conformance_setup --password-file FILE [--members 6] [--admins 2]

Tempest runs with pre-provisioned credentials (the built-in identity API does not create users): each
member account is the one member of a project of its own (so a test's primary and alternate users are in
two projects) with a reader and a second member of that project beside it (Tempest's ``project_reader``
and ``project_manager``: the cloud has no manager role, Keystone's maps to member), each admin
account a user with the admin role in another project. Every account has the password
in FILE (made, mode 0600, when missing). Two small flavors, ``conformance.nano`` and the larger
``conformance.micro`` (a resize target), are made as well. Running it again changes nothing that exists.
Prints the accounts and flavors as one JSON object.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal.models import Flavor, Project, Role
from portal.services.flavors import flavor_create
from portal.services.projects_admin import membership_set, project_save

# flavorid, name, vcpus, memory_mb, root_gb: small, so that the simulated hosts take many at once.
FLAVORS = [
    ("c1", "conformance.nano", 1, 128, 1),
    ("c2", "conformance.micro", 1, 192, 2),
]


class Command(BaseCommand):
    help = "Create the member and admin accounts (each in a project of its own) and the flavors Tempest uses."

    def add_arguments(self, parser):
        parser.add_argument("--password-file", type=Path, required=True)
        parser.add_argument("--members", type=int, default=6)
        parser.add_argument("--admins", type=int, default=2)

    def handle(self, *args, password_file: Path, members: int, admins: int, **options):
        if members < 2 or admins < 1:
            raise CommandError("Tempest needs at least two member accounts and one admin account")
        password = _password(password_file)
        accounts = []
        for n in range(1, members + 1):
            accounts.append(self._account(f"conformance-member-{n}", f"conformance-{n}", Role.MEMBER, password))
            accounts.append(self._account(f"conformance-reader-{n}", f"conformance-{n}", Role.READER, password))
            # Keystone's "manager" is a member here (docs/identity.md); Tempest asks for one in the project.
            manager = self._account(f"conformance-manager-{n}", f"conformance-{n}", Role.MEMBER, password)
            accounts.append({**manager, "tempest_role": "manager"})
        for n in range(1, admins + 1):
            accounts.append(self._account(f"conformance-admin-{n}", f"conformance-admin-{n}", Role.ADMIN, password))
        flavors = [self._flavor(*spec) for spec in FLAVORS]
        self.stdout.write(json.dumps({"accounts": accounts, "flavors": flavors}))

    @transaction.atomic
    def _account(self, name: str, project_name: str, role: str, password: str) -> dict:
        User = get_user_model()  # noqa: N806
        user, _ = User.objects.get_or_create(username=name)
        if not user.check_password(password):
            user.set_password(password)
            user.save(update_fields=["password"])
        project = Project.objects.filter(name=project_name).first() or project_save(
            project=None, name=project_name, description="Tempest's conformance run"
        )
        membership_set(project=project, user=user, role=role)
        return {
            "username": name,
            "project_name": project.name,
            "project_id": str(project.pk),
            "role": role,
            "tempest_role": role,
        }

    def _flavor(self, flavorid: str, name: str, vcpus: int, memory_mb: int, root_gb: int) -> dict:
        flavor = Flavor.objects.filter(flavorid=flavorid).first() or flavor_create(
            flavorid=flavorid, name=name, vcpus=vcpus, memory_mb=memory_mb, root_gb=root_gb
        )
        return {"id": flavor.flavorid, "name": flavor.name, "memory_mb": flavor.memory_mb, "root_gb": flavor.root_gb}


def _password(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    return path.read_text().strip()
