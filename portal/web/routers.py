"""Routers: the project's list (create one, with a gateway on an external network or none; set or clear
the gateway; add an interface on one of the project's subnets or a shared one, remove one; delete a
router). Every write is the router services'; their refusals are shown as the networking API words them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.models import Port, Router
from portal.selectors import router_listings
from portal.services import routers as router_services
from portal.services.network_errors import NetworkError

from .context import page, portal_view
from .forms import errors_as_messages

READ_ONLY = "Your role in this project is read-only."


def _network_choices() -> list[tuple[str, str]]:
    return [(str(n.pk), n.name or str(n.pk)) for n in router_listings.external_networks()]


class RouterCreateForm(forms.Form):
    name = forms.CharField(max_length=255, label="Name")
    external_network = forms.ChoiceField(
        required=False,
        label="External network",
        help_text="The router's gateway to the outside, and where its floating IPs come from.",
    )

    def __init__(self, *args, networks: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["external_network"].choices = [("", "None")] + networks


class GatewayForm(forms.Form):
    network = forms.ChoiceField(required=False, label="External network")

    def __init__(self, *args, networks: list[tuple[str, str]], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["network"].choices = [("", "None")] + networks


class InterfaceAddForm(forms.Form):
    subnet = forms.ChoiceField(label="Subnet")

    def __init__(self, *args, subnets, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["subnet"].choices = [(str(s.pk), _subnet_label(s)) for s in subnets]


def _subnet_label(subnet) -> str:
    return f"{subnet.network.name or subnet.network_id}: {subnet.cidr}{f' ({subnet.name})' if subnet.name else ''}"


def _name(router: Router) -> str:
    return router.name or str(router.pk)


def _router_or_404(ctx, router_id) -> Router:
    router = router_listings.router_of_project(ctx.project, router_id)
    if router is None:
        raise Http404("No such router")
    return router


def _refusal(exc: NetworkError, router: Router, interface: dict | None = None) -> str:
    if exc.type == "RouterInUse":
        return f"Router {_name(router)} still has interfaces: remove them first."
    if exc.type == "RouterExternalGatewayInUseByFloatingIp":
        return f"Floating IPs go out through the gateway of router {_name(router)}: disassociate them first."
    if exc.type == "RouterInterfaceInUseByFloatingIP" and interface is not None:
        where = ", ".join(a["subnet"].cidr for a in interface["addresses"])
        return f"Floating IPs reach {where} through router {_name(router)}: disassociate them first."
    return exc.message


def _interfaces(ports: list[Port]) -> list[dict]:
    return [
        {
            "port": port,
            "addresses": [{"ip_address": a.ip_address, "subnet": a.subnet} for a in port.fixed_ips.all()],
        }
        for port in ports
        if port.device_owner == Port.OWNER_ROUTER_INTERFACE
    ]


@require_http_methods(["GET", "POST"])
@portal_view
def router_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    status = 200
    networks = _network_choices()
    form = RouterCreateForm(networks=networks)
    if request.method == "POST" and not ctx.can_write:
        messages.error(request, f"{READ_ONLY} You cannot create routers.")
        return HttpResponseRedirect(reverse("portal:routers"))
    if request.method == "POST":
        form = RouterCreateForm(request.POST, networks=networks)
        if form.is_valid():
            network_id = form.cleaned_data["external_network"]
            try:
                router = router_services.router_create(
                    project=ctx.project,
                    user_is_admin=ctx.is_admin,
                    name=form.cleaned_data["name"],
                    external_gateway_info={"network_id": network_id} if network_id else None,
                )
            except NetworkError as exc:
                field = {"name": "name", "external_gateway_info": "external_network"}.get(exc.field)
                form.add_error(field, exc.message)
            else:
                messages.success(request, f"Created router {_name(router)}.")
                return HttpResponseRedirect(reverse("portal:routers"))
        status = 400
    routers = list(router_listings.routers_of_project(ctx.project))
    ports = router_listings.router_ports(routers)
    subnets = list(router_listings.interface_subnets(ctx.project)) if ctx.can_write else []
    rows = []
    for router in routers:
        own_ports = ports.get(str(router.pk), [])
        interfaces = _interfaces(own_ports)
        plugged = {a["subnet"].pk for i in interfaces for a in i["addresses"]}
        gateway_ips = [
            a.ip_address for p in own_ports if p.device_owner == Port.OWNER_ROUTER_GATEWAY for a in p.fixed_ips.all()
        ]
        rows.append(
            {
                "router": router,
                "interfaces": interfaces,
                "gateway_ips": gateway_ips,
                "subnets": [s for s in subnets if s.pk not in plugged],
            }
        )
    context = {"section": "routers", "rows": rows, "form": form, "networks": networks}
    return page(request, "portal/routers.html", context, status=status)


@require_POST
@portal_view
def router_remove(request: HttpRequest, router_id) -> HttpResponse:
    ctx = request.ctx
    router = _router_or_404(ctx, router_id)
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    else:
        try:
            router_services.router_delete(router=router)
        except NetworkError as exc:
            messages.error(request, _refusal(exc, router))
        else:
            messages.success(request, f"Deleted router {_name(router)}.")
    return HttpResponseRedirect(reverse("portal:routers"))


@require_POST
@portal_view
def router_gateway(request: HttpRequest, router_id) -> HttpResponse:
    """Set the router's gateway to the external network chosen, or clear it (none chosen)."""
    ctx = request.ctx
    router = _router_or_404(ctx, router_id)
    back = HttpResponseRedirect(reverse("portal:routers"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    networks = _network_choices()
    form = GatewayForm(request.POST, networks=networks)
    if not form.is_valid():
        errors_as_messages(request, form)
        return back
    network_id = form.cleaned_data["network"]
    try:
        router_services.router_update(
            router=router,
            project=ctx.project,
            user_is_admin=ctx.is_admin,
            changes={"external_gateway_info": {"network_id": network_id} if network_id else {}},
        )
    except NetworkError as exc:
        messages.error(request, _refusal(exc, router))
    else:
        if network_id:
            network = dict(networks)[network_id]
            messages.success(request, f"Set the gateway of router {_name(router)} to {network}.")
        else:
            messages.success(request, f"Cleared the gateway of router {_name(router)}.")
    return back


@require_POST
@portal_view
def interface_add(request: HttpRequest, router_id) -> HttpResponse:
    ctx = request.ctx
    router = _router_or_404(ctx, router_id)
    back = HttpResponseRedirect(reverse("portal:routers"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    subnets = {str(s.pk): s for s in router_listings.interface_subnets(ctx.project)}
    form = InterfaceAddForm(request.POST, subnets=subnets.values())
    if not form.is_valid():
        errors_as_messages(request, form)
        return back
    subnet = subnets[form.cleaned_data["subnet"]]
    try:
        router_services.router_add_interface(
            router=router, project=ctx.project, user_is_admin=ctx.is_admin, subnet_id=str(subnet.pk)
        )
    except NetworkError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Added an interface on {_subnet_label(subnet)} to router {_name(router)}.")
    return back


@require_POST
@portal_view
def interface_remove(request: HttpRequest, router_id, port_id) -> HttpResponse:
    ctx = request.ctx
    router = _router_or_404(ctx, router_id)
    interfaces = _interfaces(router_listings.router_ports([router]).get(str(router.pk), []))
    interface = next((i for i in interfaces if i["port"].pk == port_id), None)
    if interface is None:
        raise Http404("No such interface on this router")
    back = HttpResponseRedirect(reverse("portal:routers"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    try:
        router_services.router_remove_interface(
            router=router, project=ctx.project, user_is_admin=ctx.is_admin, port_id=str(port_id)
        )
    except NetworkError as exc:
        messages.error(request, _refusal(exc, router, interface))
    else:
        where = ", ".join(a["subnet"].cidr for a in interface["addresses"]) or str(port_id)
        messages.success(request, f"Removed the interface on {where} from router {_name(router)}.")
    return back
