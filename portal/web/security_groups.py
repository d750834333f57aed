"""Security groups: the project's groups with their rules (create and delete a group, add and remove a
rule), and on an instance's page the groups its ports are in (add one, remove one). Every write is the
security group services'; their refusals are shown as the networking and compute APIs word them."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from portal.models import SecurityGroup
from portal.selectors import security_groups as group_selectors
from portal.services import instance_ports
from portal.services import security_groups as group_services
from portal.services.network_errors import NetworkError

from .context import instance_or_404, page, portal_view
from .forms import errors_as_messages

READ_ONLY = "Your role in this project is read-only."
PROTOCOLS = [("", "Any"), ("tcp", "TCP"), ("udp", "UDP"), ("icmp", "ICMP")]


class GroupCreateForm(forms.Form):
    name = forms.CharField(max_length=255, label="Name")
    description = forms.CharField(max_length=255, required=False, label="Description")


class RuleCreateForm(forms.Form):
    direction = forms.ChoiceField(choices=[("ingress", "Ingress"), ("egress", "Egress")], label="Direction")
    ethertype = forms.ChoiceField(choices=[("IPv4", "IPv4"), ("IPv6", "IPv6")], label="Ethertype")
    protocol = forms.ChoiceField(choices=PROTOCOLS, required=False, label="Protocol")
    port_range_min = forms.IntegerField(required=False, min_value=0, max_value=65535, label="From port")
    port_range_max = forms.IntegerField(required=False, min_value=0, max_value=65535, label="To port")
    remote_ip_prefix = forms.CharField(max_length=64, required=False, label="Remote CIDR")
    remote_group = forms.ChoiceField(required=False, label="Remote group")

    def __init__(self, *args, groups, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups = {str(g.pk): g for g in groups}
        self.fields["remote_group"].choices = [("", "None")] + [(k, g.name or k) for k, g in self.groups.items()]

    def clean(self):
        data = super().clean()
        if data.get("remote_ip_prefix") and data.get("remote_group"):
            raise forms.ValidationError("Give a remote CIDR or a remote group, not both.")
        return data

    def service_arguments(self) -> tuple[dict, SecurityGroup | None]:
        data = self.cleaned_data
        attrs = {"direction": data["direction"], "ethertype": data["ethertype"], "protocol": data["protocol"] or None}
        for name in ("port_range_min", "port_range_max"):
            if data[name] is not None:
                attrs[name] = data[name]
        if data["remote_ip_prefix"]:
            attrs["remote_ip_prefix"] = data["remote_ip_prefix"].strip()
        return attrs, self.groups.get(data["remote_group"]) if data["remote_group"] else None


def _project_groups(ctx):
    return group_selectors.groups_visible(ctx).filter(project=ctx.project).select_related(None).order_by("name", "id")


def _remote(rule) -> str:
    if rule.remote_group_id:
        return f"group {rule.remote_group.name or rule.remote_group_id}"
    return rule.remote_ip_prefix or ("0.0.0.0/0" if rule.ethertype == "IPv4" else "::/0")


def _ports(rule) -> str:
    if rule.port_range_min is None and rule.port_range_max is None:
        return "any"
    if rule.protocol in ("icmp", "ipv6-icmp", "1", "58"):
        kind, code = (("any" if v is None else v) for v in (rule.port_range_min, rule.port_range_max))
        return f"type {kind}, code {code}"
    if rule.port_range_min == rule.port_range_max:
        return str(rule.port_range_min)
    return f"{rule.port_range_min}–{rule.port_range_max}"


@require_http_methods(["GET", "POST"])
@portal_view
def group_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    status = 200
    form = GroupCreateForm()
    if request.method == "POST" and not ctx.can_write:
        messages.error(request, f"{READ_ONLY} You cannot create security groups.")
        return HttpResponseRedirect(reverse("portal:security-groups"))
    if request.method == "POST":
        form = GroupCreateForm(request.POST)
        if form.is_valid():
            try:
                group = group_services.group_create(
                    project=ctx.project, name=form.cleaned_data["name"], description=form.cleaned_data["description"]
                )
            except NetworkError as exc:
                form.add_error("name" if exc.field in (None, "name") else None, exc.message)
            else:
                messages.success(request, f"Created security group {group.name}.")
                return HttpResponseRedirect(reverse("portal:security-groups"))
        status = 400
    groups = list(_project_groups(ctx).prefetch_related(None).prefetch_related("rules__remote_group", "ports"))
    rows = []
    for group in groups:
        rules = [
            {
                "rule": rule,
                "protocol": rule.protocol or "any",
                "ports": _ports(rule),
                "remote": _remote(rule),
            }
            for rule in group.rules.all()
        ]
        rows.append(
            {
                "group": group,
                "rules": rules,
                "in_use": len(group.ports.all()),
                "can_delete": ctx.can_write and not group.is_default,
            }
        )
    return page(
        request,
        "portal/security_groups.html",
        {"section": "security_groups", "rows": rows, "form": form, "protocols": PROTOCOLS, "groups": groups},
        status=status,
    )


def _group_or_404(ctx, group_id) -> SecurityGroup:
    group = group_selectors.group_get(ctx, group_id)
    if group is None or group.project_id != ctx.project.pk:
        raise Http404("No such security group")
    return group


def _refusal(exc: NetworkError, group) -> str:
    if exc.type == "SecurityGroupInUse":
        return f"Security group {group.name or group.pk} is in use by instances or ports: remove it from them first."
    if exc.type == "SecurityGroupCannotRemoveDefault":
        return "The default security group cannot be deleted."
    return exc.message


@require_POST
@portal_view
def group_remove(request: HttpRequest, group_id) -> HttpResponse:
    ctx = request.ctx
    group = _group_or_404(ctx, group_id)
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    elif group.is_default:
        messages.error(request, "The default security group cannot be deleted.")
    else:
        try:
            group_services.group_delete(group=group, user_is_admin=False)
        except NetworkError as exc:
            messages.error(request, _refusal(exc, group))
        else:
            messages.success(request, f"Deleted security group {group.name or group.pk}.")
    return HttpResponseRedirect(reverse("portal:security-groups"))


@require_POST
@portal_view
def rule_add(request: HttpRequest, group_id) -> HttpResponse:
    ctx = request.ctx
    group = _group_or_404(ctx, group_id)
    back = HttpResponseRedirect(reverse("portal:security-groups"))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    form = RuleCreateForm(request.POST, groups=_project_groups(ctx).prefetch_related(None))
    if not form.is_valid():
        errors_as_messages(request, form)
        return back
    attrs, remote_group = form.service_arguments()
    try:
        group_services.rule_create(project=ctx.project, group=group, attrs=attrs, remote_group=remote_group)
    except NetworkError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Added a rule to security group {group.name or group.pk}.")
    return back


@require_POST
@portal_view
def rule_remove(request: HttpRequest, rule_id) -> HttpResponse:
    ctx = request.ctx
    rule = group_selectors.rule_get(ctx, rule_id)
    if rule is None or rule.project_id != ctx.project.pk:
        raise Http404("No such security group rule")
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
    else:
        group_services.rule_delete(rule=rule)
        messages.success(request, "Removed the rule.")
    return HttpResponseRedirect(reverse("portal:security-groups"))


def _server_action(request: HttpRequest, server_id, add: bool) -> HttpResponse:
    ctx = request.ctx
    instance = instance_or_404(request, server_id)
    back = HttpResponseRedirect(reverse("portal:instance", args=[instance.uuid]))
    if not ctx.can_write:
        messages.error(request, READ_ONLY)
        return back
    group = _group_or_404(ctx, request.POST.get("group", ""))
    action = instance_ports.server_security_group_add if add else instance_ports.server_security_group_remove
    try:
        action(ctx=ctx, instance=instance, name=str(group.pk))
    except (instance_ports.SecurityGroupRequestError, NetworkError) as exc:
        messages.error(request, str(exc))
    else:
        verb = "Added" if add else "Removed"
        where = "to" if add else "from"
        messages.success(request, f"{verb} security group {group.name or group.pk} {where} {instance.name}.")
    return back


@require_POST
@portal_view
def server_group_add(request: HttpRequest, server_id) -> HttpResponse:
    return _server_action(request, server_id, add=True)


@require_POST
@portal_view
def server_group_remove(request: HttpRequest, server_id) -> HttpResponse:
    return _server_action(request, server_id, add=False)
