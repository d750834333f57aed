"""Walks every endpoint of the compute, image and networking APIs as four callers and checks each one's scoping:
a member of another project (404 for A's resources, nothing of A's in lists), a reader of the project
trying to write (403), an admin of another project (allowed), and A's own member as the baseline.

The list of endpoints comes from the URL resolver; endpoints.py says what each one is. An endpoint or a
method that endpoints.py does not classify fails test_every_endpoint_is_classified. The portal's console
routes are walked the same way, signed in to the portal (test_portal_console_scoping).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from django.test import Client
from django.urls import get_resolver
from django.urls.resolvers import URLResolver
from django.utils import timezone
from rest_framework.test import APIClient

from portal.api.compute.networks import servers_network_id
from portal.models import Aggregate, ComputeHost, InstanceAction, InstanceTag, Keypair, Role, ServerGroup
from portal.services import floating_ips as floating_ip_services
from portal.services import routers as router_services
from portal.services import security_groups as group_services
from portal.services.networks import network_create, subnet_create
from portal.services.ports import port_create, port_update
from tests.conftest import Caller
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory

from .endpoints import ENDPOINTS, PORTAL_ENDPOINTS, Endpoint, Rule

pytestmark = pytest.mark.integration

API_PREFIXES = ("compute/", "image/", "networking")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl tenancy"


def _walk(patterns, prefix="", namespace=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), pattern.namespace or namespace)
        else:
            yield prefix + str(pattern.pattern), pattern, namespace


def api_endpoints() -> dict[str, set[str]]:
    """Every API endpoint the resolver knows: key (URL name, or ``view:<class>``) -> its HTTP methods."""
    found: dict[str, set[str]] = {}
    for route, pattern, _namespace in _walk(get_resolver().url_patterns):
        if not route.startswith(API_PREFIXES):
            continue
        view = getattr(pattern.callback, "view_class", None)
        key = pattern.name or f"view:{view.__name__ if view else pattern.callback.__name__}"
        methods = {m for m in METHODS if view is None or hasattr(view, m.lower())}
        found.setdefault(key, set()).update(methods)
    return found


def test_every_endpoint_is_classified():
    unclassified = []
    for key, methods in sorted(api_endpoints().items()):
        spec = ENDPOINTS.get(key)
        missing = sorted(methods - set(spec.methods)) if spec else sorted(methods)
        if missing:
            unclassified.append(f"{key} {missing}")
    stale = sorted(set(ENDPOINTS) - set(api_endpoints()))
    assert not unclassified, (
        "endpoints with methods that tests/integration/tenancy/endpoints.py does not classify: "
        + "; ".join(unclassified)
    )
    assert not stale, f"endpoints.py classifies endpoints that no longer exist: {stale}"


def portal_console_routes() -> set[str]:
    """The portal's routes that reach an instance's host (its console, its graphs), as namespaced URL names."""
    return {
        f"{namespace}:{pattern.name}"
        for route, pattern, namespace in _walk(get_resolver().url_patterns)
        if namespace == "portal" and ("console" in route or route.endswith("/graphs"))
    }


def test_every_portal_console_route_is_classified():
    found = portal_console_routes()
    assert found - set(PORTAL_ENDPOINTS) == set(), "portal console routes that endpoints.py does not classify"
    assert set(PORTAL_ENDPOINTS) - found == set(), "endpoints.py classifies portal routes that no longer exist"


@dataclass
class World:
    owner: Caller
    reader: Caller
    stranger: Caller
    admin: Caller
    ids: dict[str, str]
    secrets: list[str]  # identifiers of A's that must not appear in a stranger's lists
    public_key: str = PUBLIC_KEY
    public_image: str = ""


@pytest.fixture
def world(db, settings, tmp_path) -> World:
    # No worker serves tenancy-host: a question to it (diagnostics) is answered 503 after this many seconds.
    settings.CLOUD = {**settings.CLOUD, "IMAGE_DIR": tmp_path, "CONSOLE_OUTPUT_TIMEOUT": 1}
    owner = Caller(Role.MEMBER)
    project = owner.project
    reader = Caller(Role.READER, project=project)
    stranger = Caller(Role.MEMBER)
    admin = Caller(Role.ADMIN)
    FlavorFactory(flavorid="1", name="m1.tiny", extra_specs={"hw:mem_page_size": "large"})
    host = ComputeHost.objects.create(
        name="tenancy-host", last_heartbeat=timezone.now(), vcpus=8, memory_mb=8192, disk_gb=100, uptime="up 1 day"
    )
    image = ImageFactory(owner=project, visibility="private", name="a-private-image", size=1024)
    (tmp_path / str(image.id)).write_bytes(b"\0" * 1024)
    public_image = ImageFactory(owner=admin.project, visibility="public")
    server = InstanceFactory(
        project=project,
        user=owner.user,
        host=host,
        image=image,
        name="a-secret-server",
        metadata={"k1": "v"},
        vnc_host="127.0.0.1",
        vnc_port=5901,  # it has a console, so those allowed one get it
    )
    InstanceTag.objects.create(instance=server, tag="t1")
    action = InstanceAction.objects.create(
        instance=server, action="create", request_id=f"req-{uuid.uuid4()}", user=owner.user, project=project
    )
    keypair = Keypair.objects.create(user=owner.user, name="a-secret-key", public_key=PUBLIC_KEY, fingerprint="f")
    group = ServerGroup.objects.create(project=project, user=owner.user, name="a-secret-group", policy="affinity")
    aggregate = Aggregate.objects.create(name="agg1")
    net = network_create(project=project, user_is_admin=False, name="a-secret-network")
    subnet = subnet_create(project=project, user_is_admin=False, network=net, cidr="10.200.0.0/24", name="a-sub")
    port = port_create(project=project, user_is_admin=False, network=net, name="a-secret-port")
    secret_group = group_services.group_create(project=project, name="a-secret-group")
    secret_rule = group_services.rule_create(
        project=project, group=secret_group, attrs={"direction": "ingress", "protocol": "tcp"}, remote_group=None
    )
    port_update(port=port, user_is_admin=False, project=project, changes={"security_groups": [secret_group]})
    shared_net = network_create(project=admin.project, user_is_admin=True, name="shared", shared=True)
    subnet_create(project=admin.project, user_is_admin=True, network=shared_net, cidr="10.202.0.0/24")
    # A's router, with an interface on A's subnet (a second subnet free for another), and A's floating IP.
    ext_net = network_create(project=admin.project, user_is_admin=True, name="ext", external=True)
    subnet_create(project=admin.project, user_is_admin=True, network=ext_net, cidr="10.204.0.0/24")
    free_subnet = subnet_create(project=project, user_is_admin=False, network=net, cidr="10.203.0.0/24")
    secret_router = router_services.router_create(project=project, user_is_admin=False, name="a-secret-router")
    router_services.router_add_interface(
        router=secret_router, project=project, user_is_admin=False, subnet_id=str(subnet.pk)
    )
    secret_fip = floating_ip_services.floating_ip_create(project=project, user_is_admin=False, floating_network=ext_net)
    ids = {
        "server": str(server.uuid),
        "image": str(image.id),
        "keypair": keypair.name,
        "group": str(group.uuid),
        "project": project.pk,
        "request_id": action.request_id,
        "flavor": "1",
        "aggregate": str(aggregate.pk),
        "host_id": str(host.uuid),
        "host_uuid": str(host.uuid),
        "host_name": host.name,
        "owner_id": owner.user.username,
        "network": servers_network_id(),
        "net_id": str(net.pk),
        "subnet_id": str(subnet.pk),
        "port_id": str(port.pk),
        "shared_net_id": str(shared_net.pk),
        "sg_id": str(secret_group.pk),
        "sg_rule_id": str(secret_rule.pk),
        "router_id": str(secret_router.pk),
        "free_subnet_id": str(free_subnet.pk),
        "ext_net_id": str(ext_net.pk),
        "fip_id": str(secret_fip.pk),
    }
    secrets = [str(server.uuid), str(image.id), "a-secret-key", str(group.uuid), "a-secret-server"]
    secrets += [str(net.pk), str(subnet.pk), str(port.pk), "a-secret-network", "a-secret-port"]
    secrets += [str(secret_group.pk), str(secret_rule.pk), "a-secret-group"]
    secrets += [str(secret_router.pk), "a-secret-router", str(secret_fip.pk), secret_fip.floating_ip_address]
    return World(owner, reader, stranger, admin, ids, secrets, public_image=str(public_image.id))


def request(caller: Caller | None, method: str, path: str, rule: Rule, world: World, query: str = ""):
    client = caller.client if caller is not None else APIClient()
    kwargs = {"HTTP_OPENSTACK_API_VERSION": f"compute {rule.version}"}
    body = rule.body(world) if rule.body else None
    if body is not None:
        if rule.content_type and isinstance(body, bytes):
            kwargs.update(data=body, content_type=rule.content_type)
        else:
            kwargs.update(data=json.dumps(body), content_type=rule.content_type or "application/json")
    return getattr(client, method.lower())(path + query, **kwargs)


def envelope_code(response) -> int | None:
    """The status an error body states: the compute and image APIs' ``code``; Neutron's envelope states none,
    so a well-formed ``NeutronError`` stands for the response's own status."""
    try:
        body = response.json()
    except ValueError:
        return None
    neutron = body.get("NeutronError") if isinstance(body, dict) and len(body) == 1 else None
    if isinstance(neutron, dict):
        return response.status_code if neutron.get("type") and neutron.get("message") else None
    if isinstance(body, dict) and len(body) == 1:
        inner = next(iter(body.values()))
        if isinstance(inner, dict):
            return inner.get("code")
    return None


def refused(response, status: int, who: str, method: str, path: str) -> None:
    assert response.status_code == status, f"{who} {method} {path}: {response.status_code} {response.content[:300]!r}"
    assert envelope_code(response) == status, (
        f"{who} {method} {path}: not in the error envelope: {response.content[:300]!r}"
    )


def allowed(response, codes: frozenset[int], who: str, method: str, path: str) -> None:
    ok = response.status_code < 400 or response.status_code in codes
    assert ok, f"{who} {method} {path} was refused: {response.status_code} {response.content[:300]!r}"


@pytest.mark.parametrize("key", sorted(ENDPOINTS))
def test_endpoint_scoping(key, world):
    endpoint: Endpoint = ENDPOINTS[key]
    path = endpoint.path.format(**world.ids)
    for method, rule in endpoint.methods.items():
        check(method, path, rule, world)


def check(method: str, path: str, rule: Rule, world: World) -> None:
    write = method != "GET"
    scope = rule.scope
    if scope == "public":
        allowed(request(None, method, path, rule, world), frozenset(), "anonymous", method, path)
        return
    anonymous = request(None, method, path, rule, world)
    assert anonymous.status_code == 401, f"anonymous {method} {path}: {anonymous.status_code}"
    if scope in ("unimplemented", "none", "gone"):
        status = {"unimplemented": 501, "none": 404, "gone": 410}[scope]
        for who in ("owner", "stranger", "admin"):
            refused(request(getattr(world, who), method, path, rule, world), status, who, method, path)
        return

    # Who may not: checked first, while the resource is still there.
    if scope == "admin":
        for who in ("owner", "reader", "stranger"):
            refused(request(getattr(world, who), method, path, rule, world), 403, who, method, path)
    elif scope == "global":
        for who in ("owner", "reader", "stranger"):
            response = request(getattr(world, who), method, path, rule, world)
            if write:
                assert response.status_code in (403, 404, 405), f"{who} {method} {path}: {response.status_code}"
            else:
                allowed(response, rule.owner_codes, who, method, path)
    elif scope in ("owned", "user"):
        refused(request(world.stranger, method, path, rule, world), rule.stranger_code, "stranger", method, path)
        reader = request(world.reader, method, path, rule, world)
        if write and scope == "user":
            refused(reader, reader.status_code if reader.status_code in (403, 404) else 403, "reader", method, path)
        elif write:
            refused(reader, 403, "reader", method, path)
        elif scope == "user":
            refused(reader, 404, "reader", method, path)
        else:
            allowed(reader, rule.owner_codes, "reader", method, path)
        if not write:
            allowed(request(world.owner, method, path, rule, world), rule.owner_codes, "owner", method, path)
    elif scope == "tenant":
        refused(request(world.stranger, method, path, rule, world), 403, "stranger", method, path)
        reader = request(world.reader, method, path, rule, world)
        if write:
            refused(reader, 403, "reader", method, path)
        else:
            allowed(reader, rule.owner_codes, "reader", method, path)
    elif scope in ("collection", "user-collection"):
        response = request(world.stranger, method, path, rule, world)
        allowed(response, rule.owner_codes, "stranger", method, path)
        if not write:
            leaked = [s for s in world.secrets if s in response.content.decode(errors="replace")]
            assert not leaked, f"stranger GET {path} sees project A's {leaked}"
        if write and scope == "collection":
            refused(request(world.reader, method, path, rule, world), 403, "reader", method, path)
        elif not write:
            allowed(request(world.owner, method, path, rule, world), rule.owner_codes, "owner", method, path)
    else:
        raise AssertionError(f"unknown scope {scope!r} for {method} {path}")

    query = rule.admin_query.format(**world.ids)
    allowed(request(world.admin, method, path, rule, world, query), rule.admin_codes, "admin", method, path)


def portal_request(caller: Caller | None, method: str, path: str):
    client = Client()
    if caller is not None:
        client.force_login(caller.user)
    return getattr(client, method.lower())(path)


@pytest.mark.parametrize("key", sorted(PORTAL_ENDPOINTS))
def test_portal_console_scoping(key, world):
    endpoint: Endpoint = PORTAL_ENDPOINTS[key]
    path = endpoint.path.format(**world.ids)
    for method in METHODS:
        rule = endpoint.methods.get(method)
        if rule is None:
            status = portal_request(world.owner, method, path).status_code
            assert status == 405, f"owner {method} {path}: {status}, a method the route does not list"
        else:
            check_portal(method, path, rule, world)


def check_portal(method: str, path: str, rule: Rule, world: World) -> None:
    anonymous = portal_request(None, method, path)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/"), (
        f"anonymous {method} {path}: {anonymous.status_code}"
    )
    stranger = portal_request(world.stranger, method, path)
    assert stranger.status_code == 404, f"stranger {method} {path}: {stranger.status_code}"
    reader = portal_request(world.reader, method, path)
    if rule.scope == "console":
        assert reader.status_code == 403, f"reader {method} {path}: {reader.status_code} {reader.content[:300]!r}"
    elif rule.scope == "owned" and method == "GET":
        allowed(reader, rule.owner_codes, "reader", method, path)
    else:
        raise AssertionError(f"unknown portal scope {rule.scope!r} for {method} {path}")
    allowed(portal_request(world.owner, method, path), rule.owner_codes, "owner", method, path)
    allowed(portal_request(world.admin, method, path), rule.admin_codes, "admin", method, path)


def test_the_walker_catches_a_leak(world, monkeypatch):
    """The walker itself: an endpoint that forgot its scoping must fail it."""
    from portal.selectors import instances as selectors

    original = selectors.instance_shown
    monkeypatch.setattr(
        selectors,
        "instance_shown",
        lambda ctx, server_id: original(SimpleNamespace(project=ctx.project, is_admin=True, user=ctx.user), server_id),
    )
    import portal.api.compute.servers as servers_module

    monkeypatch.setattr(servers_module, "instance_shown", selectors.instance_shown)
    with pytest.raises(AssertionError, match="stranger"):
        check("GET", ENDPOINTS["server"].path.format(**world.ids), ENDPOINTS["server"].methods["GET"], world)


def test_paths_are_real(world):
    """Every path in endpoints.py resolves to the endpoint it classifies (no typo hides a check)."""
    from django.urls import resolve

    for key, endpoint in ENDPOINTS.items():
        match = resolve(re.sub(r"\?.*$", "", endpoint.path.format(**world.ids)))
        name = match.url_name or f"view:{match.func.view_class.__name__}"
        assert name == key, f"{endpoint.path} resolves to {name}, not {key}"
    for key, endpoint in PORTAL_ENDPOINTS.items():
        match = resolve(endpoint.path.format(**world.ids))
        assert match.view_name == key, f"{endpoint.path} resolves to {match.view_name}, not {key}"


def test_the_portal_walker_catches_a_console_for_readers(world, monkeypatch):
    """The portal walker itself: a console route that forgot the role check must fail it."""
    from portal.services import consoles

    monkeypatch.setattr(consoles, "console_permitted", lambda ctx: True)
    endpoint = PORTAL_ENDPOINTS["portal:console-token"]
    with pytest.raises(AssertionError, match="reader POST"):
        check_portal("POST", endpoint.path.format(**world.ids), endpoint.methods["POST"], world)
