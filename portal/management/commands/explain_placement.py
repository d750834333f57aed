"""``manage.py explain_placement``: where a boot would be placed now, and why other hosts would not do.

    manage.py explain_placement --flavor m1.small [--image <id|name>] [--zone az1] [--count 3]
        [--hint same_host=<uuid>] [--hint different_host=<uuid>] [--hint group=<uuid>]
        [--project <project id>] [--json]

Nothing is created or claimed; the decision is taken on the hosts as they are at this moment.
"""

from __future__ import annotations

import json
import uuid

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q

from portal.models import Flavor, Image, ServerGroup
from portal.selectors.hosts import explain_placement

_LIST_HINTS = ("same_host", "different_host")


def _hints(pairs: list[str]) -> dict:
    hints: dict = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not value:
            raise CommandError(f"--hint {pair!r}: expected key=value, e.g. different_host=<server uuid>")
        if key in _LIST_HINTS:
            hints.setdefault(key, []).append(value)
        else:
            hints[key] = value
    return hints


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


class Command(BaseCommand):
    help = "Explain where a hypothetical boot request would be placed, filter by filter."

    def add_arguments(self, parser):
        parser.add_argument("--flavor", required=True, help="flavor id or name")
        parser.add_argument("--image", help="image id or name (its properties matter to ImagePropertiesFilter)")
        parser.add_argument("--zone", help="availability zone asked for")
        parser.add_argument("--hint", action="append", default=[], metavar="KEY=VALUE", help="a scheduler hint")
        parser.add_argument("--project", default="", help="the project asking (for tenant-isolated aggregates)")
        parser.add_argument("--count", type=int, default=1, help="instances in one multi-create request")
        parser.add_argument("--json", action="store_true", help="print the whole explanation as JSON")

    def handle(self, *args, **options):
        flavor = Flavor.objects.filter(Q(flavorid=options["flavor"]) | Q(name=options["flavor"])).first()
        if flavor is None:
            raise CommandError(f"no flavor with id or name {options['flavor']!r}")
        image = None
        if options["image"]:
            key = _uuid_or_none(options["image"])
            images = Image.objects.filter(pk=key) if key else Image.objects.filter(name=options["image"])
            image = images.exclude(status=Image.Status.DELETED).first()
            if image is None:
                raise CommandError(f"no image with id or name {options['image']!r}")
        if not 1 <= options["count"] <= 100:
            raise CommandError("--count must be from 1 to 100")
        hints = _hints(options["hint"])
        group = None
        if "group" in hints:
            key = _uuid_or_none(hints["group"])
            group = ServerGroup.objects.filter(uuid=key).first() if key else None
            if group is None:
                raise CommandError(f"no server group {hints['group']!r}")

        result = explain_placement(
            flavor=flavor,
            image=image,
            project_id=options["project"],
            availability_zone=options["zone"],
            scheduler_hints=hints,
            group=group,
            count=options["count"],
        )
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
            return
        explanation = result["explanation"]
        self.stdout.write(explanation["summary"])
        for step in explanation["steps"]:
            reasons = ", ".join(f"{count} {reason}" for reason, count in step["reasons"].items())
            line = f"  {step['name']:<36} {step['hosts_before']:>6} in  {step['removed']:>6} removed"
            self.stdout.write(f"{line}  {reasons}" if reasons else line)
        for placement in result["placements"]:
            ranked = ", ".join(f"{r['host']} ({r['weight']:.3f})" for r in placement["ranked"])
            self.stdout.write(f"instance {placement['instance']}: {placement['host']}  [ranked: {ranked}]")
