"""Every endpoint of the compute, image and networking APIs, classified by who may reach it.

The tenancy walker (test_tenancy.py) enumerates the URL resolver and fails for any endpoint or method
missing here, so a new endpoint cannot ship without saying who may use it. To add one: give its URL
name (``view:<ViewClass>`` for an unnamed pattern) a path and a rule per method.

Scopes, and what the walker expects of each caller (project A owns the resources in the paths; the
stranger is a member of project B, the reader has the reader role in A, the admin is an admin of C):

- ``owned``: a resource of project A. Stranger 404 (or the rule's ``stranger_code``); reader reads,
  writes 403; admin allowed.
- ``user``: a resource of A's member themselves (key pairs). Stranger and reader 404 (reader writes 403);
  admin allowed with ``admin_query``.
- ``collection``: lists and creates in the caller's own project. The stranger's list shows nothing of
  A's; reader writes 403; admin allowed.
- ``tenant``: a path naming project A (quotas, usage). Stranger 403; reader reads, writes 403; admin allowed.
- ``global``: the cloud's catalogue (flavors, zones, limits). Everyone reads; writes admin only.
- ``admin``: operators only. Everyone but the admin 403.
- ``public``: no authentication (version documents, schemas).
- ``unimplemented``: 501 for everyone, in the error envelope.
- ``none``: a method the path does not have: 404 for everyone.
- ``gone``: a method the compute API retired for good (nova-network's): 410 for everyone.
- ``user-collection``: like ``collection``, but what it creates is the caller's own (key pairs), so any
  role may (Nova's policy).

``PORTAL_ENDPOINTS`` holds the portal's console and graphs routes, walked with a signed-in browser session (anonymous
callers are sent to the login page): ``console`` opens a console, so the stranger gets 404 and the reader
403 whatever the method; ``owned`` is as above. A method a route does not list must answer 405.

"Allowed" means the request got past scoping and policy: a 2xx, or one of the rule's ``admin_codes``
when a valid request still cannot succeed here (409 for a state, 400 for a missing volume service).
``body`` takes the world (see conftest) and returns the request body; ``content_type`` overrides JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

V = "/compute/v2.1"
I = "/image/v2"  # noqa: E741
N = "/networking/v2.0"


@dataclass(frozen=True)
class Rule:
    scope: str
    body: Callable[[Any], Any] | None = None
    content_type: str | None = None
    admin_query: str = ""
    admin_codes: frozenset[int] = frozenset()
    version: str = "latest"
    owner_codes: frozenset[int] = frozenset()  # what A's member gets when a valid request cannot succeed
    stranger_code: int = 404  # what another project's member gets for an ``owned`` resource


@dataclass(frozen=True)
class Endpoint:
    path: str  # formatted with the world: {server}, {image}, {project}, ...
    methods: dict[str, Rule] = field(default_factory=dict)


def r(scope: str, **kwargs) -> Rule:
    return Rule(scope, **{k: frozenset(v) if k.endswith("_codes") else v for k, v in kwargs.items()})


OWNED_GET = {"GET": r("owned")}

ENDPOINTS: dict[str, Endpoint] = {
    # --- compute: discovery and catalogue -------------------------------------------------------------
    "compute-versions": Endpoint("/compute/", {"GET": r("public")}),
    "compute-version": Endpoint(f"{V}/", {"GET": r("public")}),
    "compute-openapi": Endpoint("/compute/openapi.json", {"GET": r("public")}),
    "extensions": Endpoint(f"{V}/extensions", {"GET": r("global")}),
    "extension": Endpoint(f"{V}/extensions/os-keypairs", {"GET": r("global")}),
    "flavors": Endpoint(
        f"{V}/flavors",
        {
            "GET": r("global"),
            "POST": r("admin", body=lambda w: {"flavor": {"name": "new", "ram": 64, "vcpus": 1, "disk": 1}}),
        },
    ),
    "flavors-detail": Endpoint(f"{V}/flavors/detail", {"GET": r("global"), "POST": r("none")}),
    "flavor": Endpoint(
        f"{V}/flavors/{{flavor}}",
        {
            "GET": r("global"),
            "PUT": r("admin", body=lambda w: {"flavor": {"description": "d"}}, admin_codes={400}),
            "DELETE": r("admin"),
        },
    ),
    "flavor-action": Endpoint(
        f"{V}/flavors/{{flavor}}/action",
        {"POST": r("admin", body=lambda w: {"addTenantAccess": {"tenant": w.stranger.project.pk}}, admin_codes={409})},
    ),
    "flavor-access": Endpoint(f"{V}/flavors/{{flavor}}/os-flavor-access", {"GET": r("admin", admin_codes={404})}),
    "flavor-specs": Endpoint(
        f"{V}/flavors/{{flavor}}/os-extra_specs",
        {"GET": r("global"), "POST": r("admin", body=lambda w: {"extra_specs": {"hw:cpu_policy": "shared"}})},
    ),
    "flavor-spec": Endpoint(
        f"{V}/flavors/{{flavor}}/os-extra_specs/hw:mem_page_size",
        {
            "GET": r("global"),
            "PUT": r("admin", body=lambda w: {"hw:mem_page_size": "small"}),
            "DELETE": r("admin"),
        },
    ),
    "availability-zones": Endpoint(f"{V}/os-availability-zone", {"GET": r("global")}),
    "availability-zones-detail": Endpoint(f"{V}/os-availability-zone/detail", {"GET": r("admin")}),
    "limits": Endpoint(f"{V}/limits", {"GET": r("global")}),
    # --- compute: the caller's own things -------------------------------------------------------------
    "keypairs": Endpoint(
        f"{V}/os-keypairs",
        {
            "GET": r("collection"),
            # Key pairs belong to users, not projects: any role keeps its own (Nova's policy).
            "POST": r("user-collection", body=lambda w: {"keypair": {"name": "fresh", "public_key": w.public_key}}),
        },
    ),
    "keypair": Endpoint(
        f"{V}/os-keypairs/{{keypair}}",
        {
            "GET": r("user", admin_query="?user_id={owner_id}"),
            "DELETE": r("user", admin_query="?user_id={owner_id}"),
        },
    ),
    "server-groups": Endpoint(
        f"{V}/os-server-groups",
        {
            "GET": r("collection"),
            "POST": r("collection", body=lambda w: {"server_group": {"name": "g", "policy": "affinity"}}),
        },
    ),
    "server-group": Endpoint(  # another project's group is 403, as the compute API's policy answers
        f"{V}/os-server-groups/{{group}}",
        {"GET": r("owned", stranger_code=403), "DELETE": r("owned", stranger_code=403)},
    ),
    "servers": Endpoint(
        f"{V}/servers",
        {
            "GET": r("collection"),
            "POST": r(
                "collection",
                body=lambda w: {
                    "server": {"name": "new", "imageRef": w.public_image, "flavorRef": "1", "networks": "none"}
                },
            ),
        },
    ),
    "servers-detail": Endpoint(f"{V}/servers/detail", {"GET": r("collection"), "POST": r("none")}),
    "server": Endpoint(
        f"{V}/servers/{{server}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"server": {"name": "renamed"}}),
            "DELETE": r("owned"),
        },
    ),
    "server-action": Endpoint(f"{V}/servers/{{server}}/action", {"POST": r("owned", body=lambda w: {"os-stop": None})}),
    # The servers API under its old name (until 2.102).
    "volumes-boot": Endpoint(
        f"{V}/os-volumes_boot",
        {
            "GET": r("collection", version="2.102"),
            "POST": r(
                "collection",
                version="2.102",
                body=lambda w: {
                    "server": {"name": "new", "imageRef": w.public_image, "flavorRef": "1", "networks": "none"}
                },
            ),
        },
    ),
    "volumes-boot-detail": Endpoint(
        f"{V}/os-volumes_boot/detail", {"GET": r("collection", version="2.102"), "POST": r("none", version="2.102")}
    ),
    "volume-boot": Endpoint(
        f"{V}/os-volumes_boot/{{server}}",
        {
            "GET": r("owned", version="2.102"),
            "PUT": r("owned", version="2.102", body=lambda w: {"server": {"name": "renamed"}}),
            "DELETE": r("owned", version="2.102"),
        },
    ),
    "server-remote-consoles": Endpoint(
        f"{V}/servers/{{server}}/remote-consoles",
        {
            "POST": r(
                "owned", body=lambda w: {"remote_console": {"protocol": "vnc", "type": "novnc"}}, admin_codes={409}
            )
        },
    ),
    "server-diagnostics": Endpoint(f"{V}/servers/{{server}}/diagnostics", {"GET": r("admin", admin_codes={409, 503})}),
    "server-metadata": Endpoint(
        f"{V}/servers/{{server}}/metadata",
        {
            "GET": r("owned"),
            "POST": r("owned", body=lambda w: {"metadata": {"k2": "v"}}),
            "PUT": r("owned", body=lambda w: {"metadata": {"k1": "v"}}),
        },
    ),
    "server-metadata-item": Endpoint(
        f"{V}/servers/{{server}}/metadata/k1",
        {"GET": r("owned"), "PUT": r("owned", body=lambda w: {"meta": {"k1": "v2"}}), "DELETE": r("owned")},
    ),
    "server-tags": Endpoint(
        f"{V}/servers/{{server}}/tags",
        {"GET": r("owned"), "PUT": r("owned", body=lambda w: {"tags": ["a", "b"]}), "DELETE": r("owned")},
    ),
    "server-tag": Endpoint(
        f"{V}/servers/{{server}}/tags/t1", {"GET": r("owned"), "PUT": r("owned"), "DELETE": r("owned")}
    ),
    "server-interfaces": Endpoint(
        f"{V}/servers/{{server}}/os-interface",
        {
            "GET": r("owned"),
            "POST": r(
                "owned",
                body=lambda w: {"interfaceAttachment": {"net_id": "9f3e2d5c-0000-4000-8000-000000000001"}},
                admin_codes={400, 409},
                owner_codes={400, 409},
            ),
        },
    ),
    "server-interface": Endpoint(
        f"{V}/servers/{{server}}/os-interface/9f3e2d5c-0000-4000-8000-000000000001",
        {
            "GET": r("owned", admin_codes={404}, owner_codes={404}),
            "DELETE": r("owned", admin_codes={404, 409}, owner_codes={404, 409}),
        },
    ),
    # The volume proxy (until 2.35) with no volume service in this world: 400 for everyone who gets that
    # far (its scoping against a real Cinder: tests/integration/volumes/test_volumes_proxy_api.py).
    "volumes": Endpoint(
        f"{V}/os-volumes",
        {
            "GET": r("collection", version="2.35", owner_codes={400}, admin_codes={400}),
            "POST": r(
                "collection",
                version="2.35",
                body=lambda w: {"volume": {"size": 1}},
                owner_codes={400},
                admin_codes={400},
            ),
        },
    ),
    "volumes-detail": Endpoint(
        f"{V}/os-volumes/detail",
        {
            "GET": r("collection", version="2.35", owner_codes={400}, admin_codes={400}),
            "POST": r("none", version="2.35"),
        },
    ),
    "volume": Endpoint(
        f"{V}/os-volumes/9f3e2d5c-0000-4000-8000-000000000001",
        {
            "GET": r("owned", version="2.35", stranger_code=400, owner_codes={400}, admin_codes={400}),
            "DELETE": r("owned", version="2.35", stranger_code=400, owner_codes={400}, admin_codes={400}),
        },
    ),
    "snapshots": Endpoint(
        f"{V}/os-snapshots",
        {
            "GET": r("collection", version="2.35", owner_codes={400}, admin_codes={400}),
            "POST": r(
                "collection",
                version="2.35",
                body=lambda w: {"snapshot": {"volume_id": "9f3e2d5c-0000-4000-8000-000000000001"}},
                owner_codes={400},
                admin_codes={400},
            ),
        },
    ),
    "snapshots-detail": Endpoint(
        f"{V}/os-snapshots/detail",
        {
            "GET": r("collection", version="2.35", owner_codes={400}, admin_codes={400}),
            "POST": r("none", version="2.35"),
        },
    ),
    "snapshot": Endpoint(
        f"{V}/os-snapshots/9f3e2d5c-0000-4000-8000-000000000001",
        {
            "GET": r("owned", version="2.35", stranger_code=400, owner_codes={400}, admin_codes={400}),
            "DELETE": r("owned", version="2.35", stranger_code=400, owner_codes={400}, admin_codes={400}),
        },
    ),
    "server-volume-attachments": Endpoint(
        f"{V}/servers/{{server}}/os-volume_attachments",
        {
            "GET": r("owned"),
            "POST": r(
                "owned",
                body=lambda w: {"volumeAttachment": {"volumeId": "9f3e2d5c-0000-4000-8000-000000000001"}},
                admin_codes={400, 409},
            ),
        },
    ),
    "server-volume-attachment": Endpoint(
        f"{V}/servers/{{server}}/os-volume_attachments/9f3e2d5c-0000-4000-8000-000000000001",
        {
            "GET": r("owned", admin_codes={404}, owner_codes={404}),
            "PUT": r(
                "owned",
                body=lambda w: {"volumeAttachment": {"volumeId": "9f3e2d5c-0000-4000-8000-000000000001"}},
                admin_codes={400, 404},
                owner_codes={400, 403, 404},
            ),
            "DELETE": r("owned", admin_codes={404}, owner_codes={404}),
        },
    ),
    # No host offers virtiofs: nothing is ever attached, and attaching to the running server is 409.
    "server-shares": Endpoint(
        f"{V}/servers/{{server}}/shares",
        {
            "GET": r("owned"),
            "POST": r(
                "owned",
                body=lambda w: {"share": {"share_id": "9f3e2d5c-0000-4000-8000-000000000001"}},
                admin_codes={409},
                owner_codes={409},
            ),
        },
    ),
    "server-share": Endpoint(
        f"{V}/servers/{{server}}/shares/9f3e2d5c-0000-4000-8000-000000000001",
        {
            "GET": r("owned", admin_codes={404}, owner_codes={404}),
            "DELETE": r("owned", admin_codes={404, 409}, owner_codes={404, 409}),
        },
    ),
    "server-instance-actions": Endpoint(f"{V}/servers/{{server}}/os-instance-actions", OWNED_GET),
    "server-instance-action": Endpoint(f"{V}/servers/{{server}}/os-instance-actions/{{request_id}}", OWNED_GET),
    # --- compute: per project, addressed by its id ----------------------------------------------------
    "quota-set": Endpoint(
        f"{V}/os-quota-sets/{{project}}",
        {
            "GET": r("tenant"),
            "PUT": r("admin", body=lambda w: {"quota_set": {"instances": 20}}),
            "DELETE": r("admin"),
        },
    ),
    "quota-set-defaults": Endpoint(f"{V}/os-quota-sets/{{project}}/defaults", {"GET": r("global")}),
    "quota-set-detail": Endpoint(f"{V}/os-quota-sets/{{project}}/detail", {"GET": r("tenant")}),
    "usage": Endpoint(f"{V}/os-simple-tenant-usage/{{project}}", {"GET": r("tenant")}),
    # --- compute: operators ---------------------------------------------------------------------------
    "quota-class-set": Endpoint(
        f"{V}/os-quota-class-sets/default",
        {"GET": r("admin"), "PUT": r("admin", body=lambda w: {"quota_class_set": {"instances": 20}})},
    ),
    "aggregates": Endpoint(
        f"{V}/os-aggregates", {"GET": r("admin"), "POST": r("admin", body=lambda w: {"aggregate": {"name": "agg2"}})}
    ),
    "aggregate": Endpoint(
        f"{V}/os-aggregates/{{aggregate}}",
        {"GET": r("admin"), "PUT": r("admin", body=lambda w: {"aggregate": {"name": "agg3"}}), "DELETE": r("admin")},
    ),
    "aggregate-action": Endpoint(
        f"{V}/os-aggregates/{{aggregate}}/action",
        {"POST": r("admin", body=lambda w: {"set_metadata": {"metadata": {"k": "v"}}})},
    ),
    "aggregate-images": Endpoint(
        f"{V}/os-aggregates/{{aggregate}}/images",
        {"POST": r("admin", body=lambda w: {"cache": [{"id": w.public_image}]})},
    ),
    "scheduler-explain": Endpoint(
        f"{V}/os-scheduler-explain",
        {"POST": r("admin", body=lambda w: {"server": {"flavorRef": "1"}}, admin_codes={400})},
    ),
    "hypervisors": Endpoint(f"{V}/os-hypervisors", {"GET": r("admin")}),
    "hypervisors-detail": Endpoint(f"{V}/os-hypervisors/detail", {"GET": r("admin")}),
    # Removed by 2.88 (a 404 since): walked at the last microversion that has them.
    "hypervisors-statistics": Endpoint(f"{V}/os-hypervisors/statistics", {"GET": r("admin", version="2.87")}),
    "hypervisor": Endpoint(f"{V}/os-hypervisors/{{host_id}}", {"GET": r("admin")}),
    "hypervisor-uptime": Endpoint(f"{V}/os-hypervisors/{{host_id}}/uptime", {"GET": r("admin", version="2.87")}),
    # Removed by 2.53 (a 404 since): walked at the last microversion that has them.
    "hypervisors-search": Endpoint(f"{V}/os-hypervisors/{{host_name}}/search", {"GET": r("admin", version="2.52")}),
    "hypervisors-servers": Endpoint(f"{V}/os-hypervisors/{{host_name}}/servers", {"GET": r("admin", version="2.52")}),
    "services": Endpoint(f"{V}/os-services", {"GET": r("admin")}),
    "hosts": Endpoint(f"{V}/os-hosts", {"GET": r("admin", version="2.42")}),
    "host": Endpoint(
        f"{V}/os-hosts/{{host_name}}",
        {"GET": r("admin", version="2.42"), "PUT": r("admin", version="2.42", body=lambda w: {"status": "enable"})},
    ),
    # The libvirt driver powers no host: 501 once past policy.
    "host-power": Endpoint(
        f"{V}/os-hosts/{{host_name}}/reboot", {"GET": r("admin", version="2.42", admin_codes={501})}
    ),
    "service": Endpoint(
        f"{V}/os-services/{{host_uuid}}",
        # The world's host runs a server: the admin's delete is refused (409) and the host stays.
        {
            "PUT": r("admin", body=lambda w: {"status": "disabled"}, admin_codes={400}),
            "DELETE": r("admin", admin_codes={409}),
        },
    ),
    "usages": Endpoint(f"{V}/os-simple-tenant-usage", {"GET": r("admin")}),
    "usage-audit-logs": Endpoint(f"{V}/os-instance_usage_audit_log", {"GET": r("admin")}),
    "usage-audit-log": Endpoint(f"{V}/os-instance_usage_audit_log/2026-01-15%2000:00:00", {"GET": r("admin")}),
    "console-auth-token": Endpoint(f"{V}/os-console-auth-tokens/nosuchtoken", {"GET": r("admin", admin_codes={404})}),
    "orphan-domains": Endpoint(f"{V}/os-orphan-domains", {"GET": r("admin")}),
    "migrations": Endpoint(f"{V}/os-migrations", {"GET": r("admin")}),
    "server-migrations": Endpoint(f"{V}/servers/{{server}}/migrations", {"GET": r("admin")}),
    # No migration runs in the world: an admin gets past policy to a 404.
    "server-migration": Endpoint(
        f"{V}/servers/{{server}}/migrations/1",
        {"GET": r("admin", admin_codes={404}), "DELETE": r("admin", admin_codes={404, 409})},
    ),
    "server-migration-action": Endpoint(
        f"{V}/servers/{{server}}/migrations/1/action",
        {"POST": r("admin", body=lambda w: {"force_complete": None}, admin_codes={404, 409})},
    ),
    # A drain of a host that does not exist: past policy to a 404, so no host of the world is disabled.
    "host-drains": Endpoint(
        f"{V}/os-host-drains",
        {"GET": r("admin"), "POST": r("admin", body=lambda w: {"drain": {"host": "no-such-host"}}, admin_codes={404})},
    ),
    "host-drain": Endpoint(
        f"{V}/os-host-drains/00000000-0000-0000-0000-000000000000",
        {"GET": r("admin", admin_codes={404}), "DELETE": r("admin", admin_codes={404})},
    ),
    "server-topology": Endpoint(f"{V}/servers/{{server}}/topology", OWNED_GET),
    "server-ips": Endpoint(f"{V}/servers/{{server}}/ips", OWNED_GET),
    "server-password": Endpoint(
        f"{V}/servers/{{server}}/os-server-password", {"GET": r("owned"), "DELETE": r("owned")}
    ),
    "server-network-ips": Endpoint(
        f"{V}/servers/{{server}}/ips/private", {"GET": r("owned", admin_codes={404}, owner_codes={404})}
    ),
    "server-external-events": Endpoint(
        f"{V}/os-server-external-events",
        {"POST": r("admin", body=lambda w: {"events": [{"name": "network-changed", "server_uuid": w.ids["server"]}]})},
    ),
    "server-security-groups": Endpoint(f"{V}/servers/{{server}}/os-security-groups", OWNED_GET),
    # The security group proxy, until 2.35 (a 404 since).
    "security-groups": Endpoint(
        f"{V}/os-security-groups",
        {
            "GET": r("collection", version="2.35"),
            "POST": r("collection", version="2.35", body=lambda w: {"security_group": {"name": "mine"}}),
            "DELETE": r("none", version="2.35"),
        },
    ),
    "security-group": Endpoint(
        f"{V}/os-security-groups/{{sg_id}}",
        {
            "GET": r("owned", version="2.35"),
            "PUT": r("owned", version="2.35", body=lambda w: {"security_group": {"name": "renamed"}}),
            "DELETE": r("owned", version="2.35", admin_codes={400}),  # A's port is in it (Nova's proxy: 400)
        },
    ),
    "security-group-rules": Endpoint(
        f"{V}/os-security-group-rules",
        {
            "POST": r(
                "collection",
                version="2.35",
                body=lambda w: {
                    "security_group_rule": {
                        "parent_group_id": w.ids["sg_id"],
                        "ip_protocol": "udp",
                        "from_port": 53,
                        "to_port": 53,
                    }
                },  # fmt: skip
                owner_codes={404},
            ),
        },
    ),
    "security-group-rule": Endpoint(
        f"{V}/os-security-group-rules/{{sg_rule_id}}", {"DELETE": r("owned", version="2.35")}
    ),
    # The network proxy, until 2.35 (a 404 since).
    # The floating IP proxy, until 2.35 (a 404 since).
    "floating-ip-pools": Endpoint(f"{V}/os-floating-ip-pools", {"GET": r("global", version="2.35")}),
    "floating-ips": Endpoint(
        f"{V}/os-floating-ips",
        {
            "GET": r("collection", version="2.35"),
            "POST": r("collection", version="2.35", body=lambda w: {"pool": "ext"}),
        },
    ),
    "floating-ip": Endpoint(
        f"{V}/os-floating-ips/{{fip_id}}",
        {"GET": r("owned", version="2.35"), "DELETE": r("owned", version="2.35")},
    ),
    # The image proxy, until 2.35 (a 404 since).
    "images": Endpoint(f"{V}/images", {"GET": r("collection", version="2.35"), "DELETE": r("none", version="2.35")}),
    "images-detail": Endpoint(
        f"{V}/images/detail", {"GET": r("collection", version="2.35"), "DELETE": r("none", version="2.35")}
    ),
    "image": Endpoint(
        f"{V}/images/{{image}}", {"GET": r("owned", version="2.35"), "DELETE": r("owned", version="2.35")}
    ),
    "image-metadata": Endpoint(
        f"{V}/images/{{image}}/metadata",
        {
            "GET": r("owned", version="2.35"),
            "POST": r("owned", version="2.35", body=lambda w: {"metadata": {"k1": "v1"}}),
            "PUT": r("owned", version="2.35", body=lambda w: {"metadata": {"k1": "v1"}}),
        },
    ),
    "image-metadata-item": Endpoint(
        f"{V}/images/{{image}}/metadata/k1",
        {
            "GET": r("owned", version="2.35", admin_codes={404}, owner_codes={404}),
            "PUT": r("owned", version="2.35", body=lambda w: {"meta": {"k1": "v1"}}),
            "DELETE": r("owned", version="2.35", admin_codes={404}, owner_codes={404}),
        },
    ),
    "networks": Endpoint(f"{V}/os-networks", {"GET": r("global", version="2.35")}),
    "network": Endpoint(f"{V}/os-networks/{{network}}", {"GET": r("global", version="2.35")}),
    "tenant-networks": Endpoint(
        f"{V}/os-tenant-networks",
        {"GET": r("collection", version="2.35"), "POST": r("gone", body=lambda w: {"network": {"label": "x"}})},
    ),
    "tenant-network": Endpoint(
        f"{V}/os-tenant-networks/{{net_id}}", {"GET": r("owned", version="2.35"), "DELETE": r("gone")}
    ),
    # --- image API ------------------------------------------------------------------------------------
    "image-versions": Endpoint("/image/", {"GET": r("public")}),
    "image-versions-explicit": Endpoint("/image/versions", {"GET": r("public")}),
    "view:VersionsView": Endpoint(f"{I}/", {"GET": r("public")}),
    "image-schema": Endpoint(f"{I}/schemas/image", {"GET": r("global")}),
    "images-schema": Endpoint(f"{I}/schemas/images", {"GET": r("global")}),
    "image-import-info": Endpoint(f"{I}/info/import", {"GET": r("global")}),
    "image-list": Endpoint(
        f"{I}/images",
        {
            "GET": r("collection"),
            "POST": r(
                "collection", body=lambda w: {"name": "mine", "disk_format": "qcow2", "container_format": "bare"}
            ),
        },
    ),
    "image-detail": Endpoint(
        f"{I}/images/{{image}}",
        {
            "GET": r("owned"),
            "PATCH": r(
                "owned",
                body=lambda w: [{"op": "replace", "path": "/name", "value": "renamed"}],
                content_type="application/openstack-images-v2.1-json-patch",
            ),
            "DELETE": r("owned"),
        },
    ),
    "image-file": Endpoint(
        f"{I}/images/{{image}}/file",
        {
            "GET": r("owned", admin_codes={204}, owner_codes={204}),
            "PUT": r(
                "owned",
                body=lambda w: b"QFI\xfb",
                content_type="application/octet-stream",
                admin_codes={400, 409},
                owner_codes={400, 409},
            ),
        },
    ),
    "image-tag": Endpoint(f"{I}/images/{{image}}/tags/t1", {"PUT": r("owned"), "DELETE": r("owned")}),
    "image-tasks": Endpoint(f"{I}/images/{{image}}/tasks", {"GET": r("owned")}),
    "view:NotImplementedView": Endpoint(
        f"{I}/images/{{image}}/members",
        {method: r("unimplemented") for method in ("GET", "POST", "PUT", "PATCH", "DELETE")},
    ),
    # --- networking API -------------------------------------------------------------------------------
    "networking-versions-root": Endpoint("/networking", {"GET": r("public")}),
    "networking-versions": Endpoint("/networking/", {"GET": r("public")}),
    "networking-v2": Endpoint(f"{N}/", {"GET": r("global")}),
    "networking-extensions": Endpoint(f"{N}/extensions", {"GET": r("global")}),
    "networking-extension": Endpoint(f"{N}/extensions/provider", {"GET": r("global")}),
    "networking-networks": Endpoint(
        f"{N}/networks",
        {"GET": r("collection"), "POST": r("collection", body=lambda w: {"network": {"name": "mine"}})},
    ),
    "networking-network": Endpoint(
        f"{N}/networks/{{net_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"network": {"name": "renamed"}}),
            # A's network has a port: deleting it is a 409 once past policy.
            "DELETE": r("owned", admin_codes={409}),
        },
    ),
    "networking-subnets": Endpoint(
        f"{N}/subnets",
        {
            "GET": r("collection"),
            # A subnet goes on a network the caller may change: the stranger may not see A's (404).
            "POST": r(
                "collection",
                body=lambda w: {"subnet": {"network_id": w.ids["net_id"], "cidr": "10.201.0.0/24"}},
                owner_codes={404},
            ),
        },
    ),
    "networking-subnet": Endpoint(
        f"{N}/subnets/{{subnet_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"subnet": {"name": "renamed"}}),
            "DELETE": r("owned", admin_codes={409}),  # A's port holds an address on it
        },
    ),
    "networking-ports": Endpoint(
        f"{N}/ports",
        {
            "GET": r("collection"),
            "POST": r("collection", body=lambda w: {"port": {"network_id": w.ids["shared_net_id"]}}),
        },
    ),
    "networking-port": Endpoint(
        f"{N}/ports/{{port_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"port": {"name": "renamed"}}),
            "DELETE": r("owned"),
        },
    ),
    "networking-security-groups": Endpoint(
        f"{N}/security-groups",
        {"GET": r("collection"), "POST": r("collection", body=lambda w: {"security_group": {"name": "mine"}})},
    ),
    "networking-security-group": Endpoint(
        f"{N}/security-groups/{{sg_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"security_group": {"name": "renamed"}}),
            "DELETE": r("owned", admin_codes={409}),  # A's port is in it
        },
    ),
    "networking-security-group-rules": Endpoint(
        f"{N}/security-group-rules",
        {
            "GET": r("collection"),
            # A rule goes in a group the caller sees: the stranger does not see A's (404).
            "POST": r(
                "collection",
                body=lambda w: {
                    "security_group_rule": {
                        "security_group_id": w.ids["sg_id"],
                        "direction": "egress",
                        "protocol": "udp",
                    }
                },
                owner_codes={404},
            ),
        },
    ),
    "networking-security-group-rule": Endpoint(
        f"{N}/security-group-rules/{{sg_rule_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"security_group_rule": {"description": "x"}}),
            "DELETE": r("owned"),
        },
    ),
    "networking-routers": Endpoint(
        f"{N}/routers",
        {"GET": r("collection"), "POST": r("collection", body=lambda w: {"router": {"name": "mine"}})},
    ),
    "networking-router": Endpoint(
        f"{N}/routers/{{router_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"router": {"name": "renamed"}}),
            "DELETE": r("owned", admin_codes={409}),  # it has an interface on A's subnet
        },
    ),
    "networking-router-add-interface": Endpoint(
        f"{N}/routers/{{router_id}}/add_router_interface",
        {"PUT": r("owned", body=lambda w: {"subnet_id": w.ids["free_subnet_id"]})},
    ),
    "networking-router-remove-interface": Endpoint(
        f"{N}/routers/{{router_id}}/remove_router_interface",
        {"PUT": r("owned", body=lambda w: {"subnet_id": w.ids["subnet_id"]})},
    ),
    "networking-floatingips": Endpoint(
        f"{N}/floatingips",
        {
            "GET": r("collection"),
            "POST": r("collection", body=lambda w: {"floatingip": {"floating_network_id": w.ids["ext_net_id"]}}),
        },
    ),
    "networking-floatingip": Endpoint(
        f"{N}/floatingips/{{fip_id}}",
        {
            "GET": r("owned"),
            "PUT": r("owned", body=lambda w: {"floatingip": {"description": "x"}}),
            "DELETE": r("owned"),
        },
    ),
    "networking-quotas": Endpoint(f"{N}/quotas", {"GET": r("admin")}),
    "networking-quota": Endpoint(
        f"{N}/quotas/{{project}}",
        {
            "GET": r("tenant"),
            "PUT": r("tenant", body=lambda w: {"quota": {"network": 50}}),
            "DELETE": r("tenant"),
        },
    ),
    "networking-quota-default": Endpoint(f"{N}/quotas/{{project}}/default", {"GET": r("tenant")}),
    "networking-quota-details": Endpoint(f"{N}/quotas/{{project}}/details", {"GET": r("tenant")}),
}

PORTAL_ENDPOINTS: dict[str, Endpoint] = {
    "portal:console": Endpoint("/instances/{server}/console/", {"GET": r("console")}),
    "portal:console-token": Endpoint("/instances/{server}/console/token", {"POST": r("console")}),
    # Only the caller's own session, and it opens nothing: a reader whose role was lowered learns why it ended.
    "portal:console-session": Endpoint("/instances/{server}/console/session", {"GET": r("owned")}),
    # Asked of the instance's host, which no worker serves here: past the scoping, a 503 within a second.
    "portal:instance-graphs": Endpoint(
        "/instances/{server}/graphs", {"GET": r("owned", owner_codes={503}, admin_codes={503})}
    ),
}
