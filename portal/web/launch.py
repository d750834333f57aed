"""Launching from the portal: the API's create service, its refusals shown next to the fields they concern."""

from __future__ import annotations

import re

from portal.auth.context import RequestContext
from portal.models import Instance
from portal.services import instances as instance_services
from portal.services.instance_ports import NetworkRequestError, SecurityGroupRequestError
from portal.services.quotas import QuotaExceeded

from .forms import LaunchForm

_QUOTA_RESOURCES = re.compile(r"Quota exceeded for ([a-z_, ]+):")
# Which field a quota resource, or a word of a refusal, is about.
_QUOTA_FIELDS = {"instances": "count", "cores": "flavor", "ram": "flavor", "server_group_members": "server_group"}
_WORD_FIELDS = (
    ("flavor", "flavor"),
    ("image", "image"),
    ("key", "keypair"),
    ("availability zone", "availability_zone"),
    ("zone", "availability_zone"),
    ("group", "server_group"),
    ("user data", "user_data"),
    ("user_data", "user_data"),
    ("network", "network"),
    ("name", "name"),
)


def launch(*, ctx: RequestContext, form: LaunchForm) -> list[Instance] | None:
    """Create ``count`` instances through the API's create service (all or none); None with form errors."""
    count = form.cleaned_data["count"]
    try:
        arguments = form.launch_arguments()
    except SecurityGroupRequestError as exc:
        form.add_error("security_groups", str(exc))
        return None
    try:
        return instance_services.servers_create(
            ctx=ctx, spec=instance_services.ServerSpec(**arguments), min_count=count, max_count=count
        )
    except QuotaExceeded as exc:
        _quota_error(form, str(exc))
    except instance_services.InvalidRequest as exc:
        form.add_error(_field_for(str(exc)), str(exc))
    except NetworkRequestError as exc:
        # About the networks chosen, or the one "automatic" would have given.
        form.add_error("networks" if form.cleaned_data["network"] == "chosen" else "network", str(exc))
    return None


def _quota_error(form: LaunchForm, message: str) -> None:
    match = _QUOTA_RESOURCES.search(message)
    resources = [r.strip() for r in match.group(1).split(",")] if match else []
    fields = sorted({_QUOTA_FIELDS.get(resource, "count") for resource in resources} or {"count"})
    for field in fields:
        form.add_error(field, message)


def _field_for(message: str) -> str | None:
    lowered = message.lower()
    for word, field in _WORD_FIELDS:
        if word in lowered:
            return field
    return None
