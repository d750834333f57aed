"""Networks: the project's list (create one with its subnet, delete a network or a subnet), and on an
instance's page attach an interface and detach one. Every write is the network controller's services;
their refusals are shown as the networking API words them."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.selectors import networks as network_selectors
from portal.services import instance_ports
from portal.services import networks as network_services
from portal.services.lifecycle import StateConflict
from portal.services.network_errors import NetworkError

from .context import instance_or_404, page, portal_view
from .forms import InterfaceAttachForm, NetworkCreateForm

READ_ONLY = "Your role in this project is read-only."


def _owned(ctx, network) -> bool:
    """Whether the caller may change ``network``: their project's, or any for an admin."""
    return ctx.is_admin or network.project_id == ctx.project.pk


@require_http_methods(["GET", "POST"])
@portal_view
def network_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    status = 200
    form = NetworkCreateForm(initial={"enable_dhcp": True})
    if request.method == "POST" and not ctx.can_write:
        messages.error(request, f"{READ_ONLY} You cannot create networks.")
        return HttpResponseRedirect(reverse("portal:networks"))
    if request.method == "POST":
        form = NetworkCreateForm(request.POST)
        if form.is_valid():
            try:
                network = _network_with_subnet(ctx, form)
            except NetworkError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Created network {network.name}.")
                return HttpResponseRedirect(reverse("portal:networks"))
        status = 400
    rows = [
        {
            "network": network,
            "owned": network.project_id == ctx.project.pk,
            "can_delete": ctx.can_write and _owned(ctx, network),
            "ports": network.ports_total if network.project_id == ctx.project.pk else network.ports_of_project,
            "subnets": list(network.subnets.all()),
        }
        for network in network_selectors.networks_of_project(ctx)
    ]
    return page(request, "portal/networks.html", {"section": "networks", "rows": rows, "form": form}, status=status)


def _network_with_subnet(ctx, form: NetworkCreateForm):
    """The network and its subnet, both or neither."""
    with transaction.atomic():
        network = network_services.network_create(
            project=ctx.project, user_is_admin=ctx.is_admin, name=form.cleaned_data["name"]
        )
        network_services.subnet_create(
            project=ctx.project,
            user_is_admin=ctx.is_admin,
            network=network,
            name=f"{form.cleaned_data['name']}-subnet"[:255],
            **form.subnet_arguments(),
        )
    return network


def _network_or_404(ctx, network_id):
    network = network_selectors.network_get(ctx, network_id)
    if network is None:
        raise Http404("No such network")
    return network


@require_POST
@portal_view
def network_remove(request: HttpRequest, network_id) -> HttpResponse:
    ctx = request.ctx
    network = _network_or_404(ctx, network_id)
    back = HttpResponseRedirect(reverse("portal:networks"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    elif not _owned(ctx, network):
        messages.error(request, f"Network {network.name or network.pk} belongs to another project.")
    else:
        try:
            network_services.network_delete(network=network)
        except NetworkError as exc:
            messages.error(request, _refusal(exc, network))
        else:
            messages.success(request, f"Deleted network {network.name or network.pk}.")
    return back


def _refusal(exc: NetworkError, network) -> str:
    if exc.type == "NetworkInUse":
        return (
            f"Network {network.name or network.pk} still has ports (instances or ports on it): "
            "detach or delete them first."
        )
    return exc.message


@require_POST
@portal_view
def subnet_remove(request: HttpRequest, subnet_id) -> HttpResponse:
    ctx = request.ctx
    subnet = network_selectors.subnet_get(ctx, subnet_id)
    if subnet is None:
        raise Http404("No such subnet")
    back = HttpResponseRedirect(reverse("portal:networks"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    elif not (ctx.is_admin or ctx.project.pk in (subnet.project_id, subnet.network.project_id)):
        messages.error(request, f"Subnet {subnet.name or subnet.cidr} belongs to another project.")
    else:
        try:
            network_services.subnet_delete(subnet=subnet)
        except NetworkError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"Deleted subnet {subnet.name or subnet.cidr}.")
    return back


_INTERFACE_REFUSALS = (StateConflict, instance_ports.NetworkRequestError)


@require_POST
@portal_view
def interface_attach(request: HttpRequest, server_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_or_404(request, server_id)
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    form = InterfaceAttachForm(request.POST, ctx=ctx)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return back
    try:
        port = instance_ports.interface_attach(
            ctx=ctx,
            instance=instance,
            network_id=form.cleaned_data["network"],
            fixed_ip=form.cleaned_data["fixed_ip"] or "",
        )
    except _INTERFACE_REFUSALS as exc:
        messages.error(request, str(exc))
    else:
        addresses = ", ".join(a.ip_address for a in port.fixed_ips.all()) or "no address"
        messages.success(request, f"Attaching an interface on {port.network.name or port.network_id} ({addresses}).")
    return back


@require_POST
@portal_view
def interface_detach(request: HttpRequest, server_id, port_id) -> HttpResponse:
    ctx = request.ctx
    instance = instance_or_404(request, server_id)
    if not instance_ports.instance_ports(instance).filter(pk=port_id).exists():
        raise Http404("No such interface on this instance")
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    try:
        instance_ports.interface_detach(ctx=ctx, instance=instance, port_id=str(port_id))
    except _INTERFACE_REFUSALS as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Detaching interface {port_id} from {instance.name}.")
    return back
