"""The portal's forms. They check what a person typed; the services check everything else."""

from __future__ import annotations

import base64
import ipaddress
import re

from django import forms
from django.conf import settings
from django.contrib import messages

from portal.auth.context import RequestContext
from portal.models import Image, Keypair
from portal.selectors.availability_zones import available_zone_names
from portal.selectors.flavors import flavors_visible
from portal.selectors.images import images_visible_to
from portal.selectors.keypairs import keypairs_of
from portal.selectors.networks import networks_usable
from portal.selectors.security_groups import groups_visible
from portal.selectors.server_groups import server_groups_visible
from portal.services import cinder
from portal.services.images import CONTAINER_FORMATS, DISK_FORMATS
from portal.services.instance_ports import NetworkRequest, security_groups_named
from portal.services.instances import InvalidRequest, check_image_fits
from portal.services.volumes import BootVolume

_NAME = re.compile(r"^\S(.*\S)?$", re.DOTALL)
MAX_USER_DATA = 65535  # base64-encoded, as the compute API takes it
MAX_COUNT = 100


class PortalForm(forms.Form):
    """Django names each field's error list ``<id>_error`` in the input's aria-describedby; _field.html
    gives the errors that id, so screen readers read them with the field."""


def errors_as_messages(request, form: forms.Form) -> None:
    """A small form's errors as messages on the page it goes back to (it has no page of its own), each
    prefixed with its field's label."""
    for field, errors in form.errors.items():
        label = form.fields[field].label if field in form.fields else None
        for error in errors:
            messages.error(request, f"{label}: {error}" if label else error)


def _check_name(value: str) -> str:
    if not _NAME.match(value) or any(ord(ch) < 32 for ch in value):
        raise forms.ValidationError("A name must not be empty, start or end with spaces, or hold control characters.")
    return value


def _flavor_label(flavor) -> str:
    disk = f"{flavor.root_gb} GB disk" if flavor.root_gb else "disk of the image's size"
    return f"{flavor.name} ({flavor.vcpus} vCPU, {flavor.memory_mb} MB RAM, {disk})"


def network_label(network, ctx: RequestContext) -> str:
    """A network as a choice: its name, and whose it is when it is not the project's own."""
    name = network.name or str(network.pk)
    if network.project_id != ctx.project.pk:
        return f"{name} (shared)" if network.shared else f"{name} (project {network.project})"
    return name


class LaunchForm(PortalForm):
    name = forms.CharField(max_length=255, strip=False)
    flavor = forms.ChoiceField()
    image = forms.ChoiceField()
    keypair = forms.ChoiceField(label="Key pair", required=False)
    availability_zone = forms.ChoiceField(label="Availability zone", required=False)
    server_group = forms.ChoiceField(label="Server group", required=False)
    network = forms.ChoiceField(
        choices=[("auto", "Default network"), ("none", "No network"), ("chosen", "The networks chosen below")],
        initial="auto",
        label="Network",
    )
    networks = forms.MultipleChoiceField(
        label="Networks",
        required=False,
        help_text="One interface on each network selected, in the order listed; used with “The networks chosen below”.",
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    security_groups = forms.MultipleChoiceField(
        label="Security groups",
        required=False,
        help_text="The groups the instance's interfaces are in; used with “The networks chosen below” or automatic.",
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )
    count = forms.IntegerField(min_value=1, max_value=MAX_COUNT, initial=1, label="Count")
    user_data = forms.CharField(
        label="User data", required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4, "cols": 60})
    )
    # Only when the cloud has block storage (removed otherwise): the image copied to a new root volume.
    boot_source = forms.ChoiceField(
        label="Root disk",
        choices=[("image", "A local disk made from the image"), ("volume", "A new volume made from the image")],
        initial="image",
    )
    volume_size = forms.IntegerField(label="Volume size (GB)", required=False, min_value=1, max_value=16384)
    delete_volume = forms.BooleanField(label="Delete the volume with the instance", required=False)

    def __init__(self, *args, ctx: RequestContext, **kwargs):
        super().__init__(*args, **kwargs)
        self.ctx = ctx
        self.volumes_enabled = cinder.configured()
        if not self.volumes_enabled:
            for name in ("boot_source", "volume_size", "delete_volume"):
                del self.fields[name]
        self.flavors = {f.flavorid: f for f in flavors_visible(ctx).filter(disabled=False)}
        self.images = {
            str(i.pk): i for i in images_visible_to(ctx=ctx).filter(status=Image.Status.ACTIVE).order_by("name")
        }
        self.keypairs = {k.name: k for k in keypairs_of(ctx.user)}
        self.groups = {str(g.uuid): g for g in server_groups_visible(ctx).order_by("name", "id")}
        self.networks = {str(n.pk): n for n in networks_usable(ctx)}
        self.fields["flavor"].choices = [("", "Choose a flavor")] + [
            (k, _flavor_label(f)) for k, f in self.flavors.items()
        ]
        self.fields["image"].choices = [("", "Choose an image")] + [(k, i.name or k) for k, i in self.images.items()]
        self.fields["keypair"].choices = [("", "No key pair")] + [(name, name) for name in self.keypairs]
        self.fields["availability_zone"].choices = [("", "Any zone")] + [(z, z) for z in sorted(available_zone_names())]
        self.fields["server_group"].choices = [("", "No server group")] + [
            (k, f"{g.name} ({g.policy})") for k, g in self.groups.items()
        ]
        self.fields["networks"].choices = [(k, network_label(n, ctx)) for k, n in self.networks.items()]
        groups = list(groups_visible(ctx).filter(project=ctx.project).prefetch_related(None).order_by("name", "id"))
        default = next((str(g.pk) for g in groups if g.is_default), "default")
        # The default group is made on first need: until then it is offered by name.
        self.fields["security_groups"].choices = [(str(g.pk), g.name or str(g.pk)) for g in groups] + (
            [] if default != "default" else [("default", "default")]
        )
        self.fields["security_groups"].initial = [default]
        if settings.CLOUD["NETWORK"]["mode"] == "user":
            automatic = "Default network (outbound only, user-mode)"
        else:
            automatic = "Automatic (the project's only network, or one made for it)"
        self.fields["network"].choices = [("auto", automatic), *self.fields["network"].choices[1:]]

    def clean_name(self) -> str:
        return _check_name(self.cleaned_data["name"])

    def clean_user_data(self) -> str | None:
        text = self.cleaned_data["user_data"]
        if not text:
            return None
        encoded = base64.b64encode(text.encode()).decode()
        if len(encoded) > MAX_USER_DATA:
            raise forms.ValidationError(f"User data must be at most {MAX_USER_DATA * 3 // 4} bytes.")
        return encoded

    def clean(self) -> dict:
        data = super().clean()
        if "networks" not in self.errors and data.get("network") in ("auto", "none", "chosen"):
            if data["network"] == "chosen" and not data.get("networks"):
                self.add_error("networks", "Choose at least one network, or another network option.")
            elif data["network"] != "chosen" and data.get("networks"):
                self.add_error("networks", "To use the networks selected, choose “The networks chosen below” above.")
        if data.get("boot_source") == "volume":
            size = data.get("volume_size")
            flavor, image = self.flavors.get(data.get("flavor", "")), self.images.get(data.get("image", ""))
            if not size:
                self.add_error("volume_size", "Give the new volume a size.")
            elif flavor is not None and image is not None:
                try:
                    check_image_fits(image, memory_mb=flavor.memory_mb, root_gb=size, disk="The volume")
                except InvalidRequest as exc:
                    self.add_error("volume_size", str(exc))
        return data

    def network_requests(self) -> str | tuple[NetworkRequest, ...]:
        """``ServerSpec.networks`` for what was chosen: "auto", "none", or one request per network."""
        data = self.cleaned_data
        if data["network"] != "chosen":
            return data["network"]
        return tuple(NetworkRequest(network_id=network_id) for network_id in data["networks"])

    def launch_arguments(self) -> dict:
        """The create service's arguments for what was chosen."""
        data = self.cleaned_data
        group = self.groups.get(data["server_group"]) if data["server_group"] else None
        image = self.images[data["image"]]
        block_devices = []
        if data.get("boot_source") == "volume":
            root = BootVolume(
                source_type="image",
                boot_index=0,
                image=image,
                volume_size=data["volume_size"],
                delete_on_termination=data["delete_volume"],
            )
            image, block_devices = None, [root]
        return {
            "name": data["name"],
            "flavor": self.flavors[data["flavor"]],
            "image": image,
            "block_devices": block_devices,
            "networks": self.network_requests(),
            "user_data": data["user_data"],
            "keypair": self.keypairs.get(data["keypair"]) if data["keypair"] else None,
            "availability_zone": data["availability_zone"] or None,
            # As the API passes a group: the hint for the scheduler, and the membership.
            "scheduler_hints": {"group": str(group.uuid)} if group else {},
            "server_group": group,
            "security_groups": self.chosen_security_groups(),
        }

    def chosen_security_groups(self) -> tuple:
        """``ServerSpec.security_groups`` as the compute API resolves them; () (the default) without networks."""
        chosen = self.cleaned_data.get("security_groups") or []
        if self.cleaned_data.get("network") == "none" or not chosen:
            return ()
        return security_groups_named(self.ctx, chosen)


class KeypairImportForm(PortalForm):
    name = forms.CharField(max_length=255, strip=False)
    key_type = forms.ChoiceField(label="Type", choices=[(t.value, t.label) for t in Keypair.Type], initial="ssh")
    public_key = forms.CharField(label="Public key", widget=forms.Textarea(attrs={"rows": 4, "cols": 70}))

    def clean_name(self) -> str:
        name = _check_name(self.cleaned_data["name"])
        if not re.fullmatch(r"[A-Za-z0-9 _.@-]+", name):
            raise forms.ValidationError(
                "A key pair name may hold letters, digits, spaces and the characters _ . @ - only."
            )
        return name


class ImageUploadForm(PortalForm):
    name = forms.CharField(max_length=255, strip=False)
    disk_format = forms.ChoiceField(label="Disk format", choices=[(f, f) for f in DISK_FORMATS], initial="qcow2")
    container_format = forms.ChoiceField(
        label="Container format", choices=[(f, f) for f in CONTAINER_FORMATS], initial="bare"
    )
    visibility = forms.ChoiceField(
        choices=[("private", "Private (this project)"), ("shared", "Shared"), ("community", "Community")],
        initial="private",
    )
    min_disk = forms.IntegerField(label="Minimum disk (GB)", min_value=0, initial=0)
    min_ram = forms.IntegerField(label="Minimum RAM (MB)", min_value=0, initial=0)
    file = forms.FileField(label="Image file")

    def __init__(self, *args, ctx: RequestContext, **kwargs):
        super().__init__(*args, **kwargs)
        if ctx.is_admin:
            self.fields["visibility"].choices = [("public", "Public (everyone)"), *self.fields["visibility"].choices]

    def clean_name(self) -> str:
        return _check_name(self.cleaned_data["name"])


class VolumeCreateForm(PortalForm):
    name = forms.CharField(max_length=255, strip=False)
    size = forms.IntegerField(label="Size (GB)", min_value=1, max_value=16384, initial=1)
    description = forms.CharField(max_length=255, required=False)

    def clean_name(self) -> str:
        return _check_name(self.cleaned_data["name"])


class NetworkCreateForm(PortalForm):
    """A network with one IPv4 subnet, as the networks page makes it."""

    name = forms.CharField(max_length=255, strip=False)
    cidr = forms.CharField(label="Subnet CIDR", max_length=64, help_text="An IPv4 range, e.g. 10.20.0.0/24")
    gateway_ip = forms.GenericIPAddressField(
        label="Gateway", protocol="IPv4", required=False, help_text="The subnet's first address when left empty."
    )
    no_gateway = forms.BooleanField(label="No gateway", required=False)
    enable_dhcp = forms.BooleanField(label="DHCP", required=False, initial=True)
    dns_nameservers = forms.CharField(
        label="DNS servers", max_length=255, required=False, help_text="IPv4 addresses, separated by commas or spaces"
    )

    def clean_name(self) -> str:
        return _check_name(self.cleaned_data["name"])

    def clean_cidr(self) -> str:
        text = self.cleaned_data["cidr"].strip()
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise forms.ValidationError(f"{text[:64]} is not an IP range such as 10.20.0.0/24.") from None
        if network.version != 4:
            raise forms.ValidationError("Only IPv4 subnets can be made here.")
        return text

    def clean_dns_nameservers(self) -> list[str]:
        servers = [s for s in re.split(r"[\s,]+", self.cleaned_data["dns_nameservers"]) if s]
        for server in servers:
            try:
                ipaddress.IPv4Address(server)
            except ValueError:
                raise forms.ValidationError(f"{server[:64]} is not an IPv4 address.") from None
        return servers

    def clean(self) -> dict:
        data = super().clean()
        if data.get("no_gateway") and data.get("gateway_ip"):
            self.add_error("gateway_ip", "Give a gateway or choose “No gateway”, not both.")
        return data

    def subnet_arguments(self) -> dict:
        """``subnet_create``'s arguments (all but the network and the caller) for what was typed."""
        data = self.cleaned_data
        gateway = None if data["no_gateway"] else (data["gateway_ip"] or ...)
        return {
            "cidr": data["cidr"],
            "gateway_ip": gateway,
            "enable_dhcp": data["enable_dhcp"],
            "dns_nameservers": data["dns_nameservers"] or None,
        }


class InterfaceAttachForm(PortalForm):
    """One more interface for an instance: on a network the project may use, at an address or any."""

    network = forms.ChoiceField(label="Network")
    fixed_ip = forms.GenericIPAddressField(label="Fixed IP", protocol="IPv4", required=False)

    def __init__(self, *args, ctx: RequestContext, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["network"].choices = [(str(n.pk), network_label(n, ctx)) for n in networks_usable(ctx)]
