"""Floating IPs: the project's list (allocate one from an external network, associate it with a fixed
address of one of the project's instances, disassociate it, release it), and on an instance's page the
floating IPs that stand for its addresses (associate one, or a new one, with it; disassociate one). Every
write is the floating IP services'; their refusals are shown as the networking API words them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.models import FloatingIP, Network
from portal.selectors import router_listings
from portal.services import floating_ips as floating_ip_services
from portal.services.network_errors import NetworkError

from .context import instance_or_404, page, portal_view
from .forms import errors_as_messages

READ_ONLY = "Your role in this project is read-only."
NEW = "new:"  # a target choice on an instance's page: a new address from this external network


def target_label(address: router_listings.FixedAddress, *, with_instance: bool = True) -> str:
    where = address.port.network.name or str(address.port.network_id)
    label = f"{address.ip_address} on {where}"
    return f"{address.instance.name}: {label}" if with_instance else label


class AllocateForm(forms.Form):
    network = forms.ChoiceField(label="External network")
    description = forms.CharField(max_length=255, required=False, label="Description")

    def __init__(self, *args, networks: list[Network], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["network"].choices = [(str(n.pk), n.name or str(n.pk)) for n in networks]


class AssociateForm(forms.Form):
    """Where a floating IP is to point: one of ``addresses`` (by ``port id/address``)."""

    target = forms.ChoiceField(label="Instance address")

    def __init__(self, *args, addresses: list[router_listings.FixedAddress], **kwargs):
        super().__init__(*args, **kwargs)
        self.addresses = {a.key: a for a in addresses}
        self.fields["target"].choices = [(a.key, target_label(a)) for a in addresses]

    def address(self) -> router_listings.FixedAddress:
        return self.addresses[self.cleaned_data["target"]]


class InstanceAssociateForm(AssociateForm):
    """On an instance's page: which floating IP (a free one of the project, or a new one from an external
    network), for which of the instance's addresses."""

    floating_ip = forms.ChoiceField(label="Floating IP")

    def __init__(self, *args, free: list[FloatingIP], networks: list[Network], **kwargs):
        super().__init__(*args, **kwargs)
        self.free = {str(f.pk): f for f in free}
        self.networks = {f"{NEW}{n.pk}": n for n in networks}
        self.fields["floating_ip"].choices = [
            (k, f"{f.floating_ip_address} ({f.floating_network.name or f.floating_network_id})")
            for k, f in self.free.items()
        ] + [(k, f"A new address from {n.name or n.pk}") for k, n in self.networks.items()]
        self.fields["target"].choices = [(a.key, target_label(a, with_instance=False)) for a in self.addresses.values()]


def _floating_ip_or_404(ctx, floating_ip_id) -> FloatingIP:
    floating_ip = router_listings.floating_ip_of_project(ctx.project, floating_ip_id)
    if floating_ip is None:
        raise Http404("No such floating IP")
    return floating_ip


@require_http_methods(["GET", "POST"])
@portal_view
def floating_ip_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    status = 200
    networks = list(router_listings.external_networks())
    form = AllocateForm(networks=networks)
    if request.method == "POST" and not ctx.can_write:
        messages.error(request, f"{READ_ONLY} You cannot allocate floating IPs.")
        return HttpResponseRedirect(reverse("portal:floating-ips"))
    if request.method == "POST":
        form = AllocateForm(request.POST, networks=networks)
        if form.is_valid():
            network = next(n for n in networks if str(n.pk) == form.cleaned_data["network"])
            try:
                floating_ip = floating_ip_services.floating_ip_create(
                    project=ctx.project,
                    user_is_admin=ctx.is_admin,
                    floating_network=network,
                    description=form.cleaned_data["description"],
                )
            except NetworkError as exc:
                form.add_error("description" if exc.field == "description" else "network", exc.message)
            else:
                messages.success(
                    request,
                    f"Allocated floating IP {floating_ip.floating_ip_address} from {network.name or network.pk}.",
                )
                return HttpResponseRedirect(reverse("portal:floating-ips"))
        status = 400
    floating_ips = list(router_listings.floating_ips_of_project(ctx.project))
    instances = router_listings.instances_of_ports(ctx, [f.port for f in floating_ips])
    addresses = router_listings.fixed_addresses(ctx, ctx.project) if ctx.can_write else []
    rows = [
        {
            "floating_ip": f,
            "instance": instances.get(f.port.device_id) if f.port is not None else None,
        }
        for f in floating_ips
    ]
    targets = [(a.key, target_label(a)) for a in addresses]
    context = {"section": "floating_ips", "rows": rows, "form": form, "targets": targets}
    return page(request, "portal/floating_ips.html", context, status=status)


def _associated(request: HttpRequest, floating_ip: FloatingIP, address: router_listings.FixedAddress) -> None:
    messages.success(
        request,
        f"Associated floating IP {floating_ip.floating_ip_address} with {address.instance.name} "
        f"({address.ip_address}).",
    )


@require_POST
@portal_view
def floating_ip_associate(request: HttpRequest, floating_ip_id) -> HttpResponse:
    ctx = request.ctx
    floating_ip = _floating_ip_or_404(ctx, floating_ip_id)
    back = HttpResponseRedirect(reverse("portal:floating-ips"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    form = AssociateForm(request.POST, addresses=router_listings.fixed_addresses(ctx, ctx.project))
    if not form.is_valid():
        errors_as_messages(request, form)
        return back
    address = form.address()
    try:
        floating_ip = floating_ip_services.floating_ip_associate(
            floating_ip=floating_ip,
            project=ctx.project,
            user_is_admin=ctx.is_admin,
            port=address.port,
            fixed_ip_address=address.ip_address,
        )
    except NetworkError as exc:
        messages.error(request, exc.message)
    else:
        _associated(request, floating_ip, address)
    return back


@require_POST
@portal_view
def floating_ip_disassociate(request: HttpRequest, floating_ip_id) -> HttpResponse:
    ctx = request.ctx
    floating_ip = _floating_ip_or_404(ctx, floating_ip_id)
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    elif floating_ip.port_id is None:
        messages.error(request, f"Floating IP {floating_ip.floating_ip_address} is not associated.")
    else:
        try:
            floating_ip_services.floating_ip_disassociate(floating_ip=floating_ip)
        except NetworkError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Disassociated floating IP {floating_ip.floating_ip_address}.")
    return HttpResponseRedirect(reverse("portal:floating-ips"))


@require_POST
@portal_view
def floating_ip_release(request: HttpRequest, floating_ip_id) -> HttpResponse:
    ctx = request.ctx
    floating_ip = _floating_ip_or_404(ctx, floating_ip_id)
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    else:
        try:
            floating_ip_services.floating_ip_delete(floating_ip=floating_ip)
        except NetworkError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Released floating IP {floating_ip.floating_ip_address}.")
    return HttpResponseRedirect(reverse("portal:floating-ips"))


# --- on an instance's page ------------------------------------------------------------------------------


def instance_form(instance, ctx, data=None) -> InstanceAssociateForm:
    """The instance page's form: the free floating IPs of the instance's project, a new one from each
    external network, and the instance's addresses no floating IP stands for yet."""
    free = list(router_listings.floating_ips_of_project(instance.project).filter(port__isnull=True))
    return InstanceAssociateForm(
        data,
        addresses=router_listings.fixed_addresses(ctx, instance.project, instance),
        free=free,
        networks=list(router_listings.external_networks()),
    )


@require_POST
@portal_view
def instance_associate(request: HttpRequest, server_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_or_404(request, server_id)
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    form = instance_form(instance, ctx, request.POST)
    if not form.is_valid():
        errors_as_messages(request, form)
        return back
    address, choice = form.address(), form.cleaned_data["floating_ip"]
    # The instance's project's addresses, whoever asks (an admin may be on another project's instance).
    try:
        if choice in form.networks:
            floating_ip = floating_ip_services.floating_ip_create(
                project=instance.project,
                user_is_admin=ctx.is_admin,
                floating_network=form.networks[choice],
                port=address.port,
                fixed_ip_address=address.ip_address,
            )
        else:
            floating_ip = floating_ip_services.floating_ip_associate(
                floating_ip=form.free[choice],
                project=instance.project,
                user_is_admin=ctx.is_admin,
                port=address.port,
                fixed_ip_address=address.ip_address,
            )
    except NetworkError as exc:
        messages.error(request, exc.message)
    else:
        _associated(request, floating_ip, address)
    return back


@require_POST
@portal_view
def instance_disassociate(request: HttpRequest, server_id, floating_ip_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_or_404(request, server_id)
    floating_ip = next((f for f in router_listings.instance_floating_ips(instance) if f.pk == floating_ip_id), None)
    if floating_ip is None:
        raise Http404("No such floating IP on this instance")
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    try:
        floating_ip_services.floating_ip_disassociate(floating_ip=floating_ip)
    except NetworkError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Disassociated floating IP {floating_ip.floating_ip_address} from {instance.name}.")
    return back
