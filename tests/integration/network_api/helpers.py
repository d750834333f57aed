"""Requests to the networking API as a test caller, and checks of Neutron's error envelope."""

from __future__ import annotations

import json

N = "/networking/v2.0"


def call(caller, method: str, path: str, body=None, **query):
    kwargs = {}
    if body is not None:
        kwargs = {"data": json.dumps(body), "content_type": "application/json"}
    url = f"{N}{path}"
    if query:
        from urllib.parse import urlencode

        url += "?" + urlencode(query, doseq=True)
    return getattr(caller.client, method.lower())(url, **kwargs)


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, f"{response.status_code} {response.content[:500]!r}"
    return response.json() if response.content else {}


def fault(response, status: int, type_: str | None = None) -> dict:
    """The NeutronError of a refused request, checked for its status and type."""
    assert response.status_code == status, f"{response.status_code} {response.content[:500]!r}"
    body = response.json()
    assert set(body) == {"NeutronError"}, body
    error = body["NeutronError"]
    assert set(error) == {"type", "message", "detail"} and error["message"], error
    if type_ is not None:
        assert error["type"] == type_, error
    return error


def network(caller, **attrs) -> dict:
    return ok(call(caller, "POST", "/networks", {"network": {"name": "net", **attrs}}), 201)["network"]


def subnet(caller, network_id: str, cidr: str, **attrs) -> dict:
    body = {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": 4, **attrs}}
    return ok(call(caller, "POST", "/subnets", body), 201)["subnet"]


def port(caller, network_id: str, **attrs) -> dict:
    return ok(call(caller, "POST", "/ports", {"port": {"network_id": network_id, **attrs}}), 201)["port"]


def external_network(admin, cidr: str = "203.0.113.0/24", name: str = "public", physnet: str = "extnet") -> dict:
    """An external (flat) network with one subnet, as an operator makes ``public``."""
    made = network(
        admin,
        name=name,
        **{
            "router:external": True,
            "provider:network_type": "flat",
            "provider:physical_network": physnet,
        },
    )
    made["subnet"] = subnet(admin, made["id"], cidr, enable_dhcp=False)
    return made


def router(caller, **attrs) -> dict:
    return ok(call(caller, "POST", "/routers", {"router": {"name": "r1", **attrs}}), 201)["router"]


def add_interface(caller, router_id: str, **body):
    return call(caller, "PUT", f"/routers/{router_id}/add_router_interface", body)


def remove_interface(caller, router_id: str, **body):
    return call(caller, "PUT", f"/routers/{router_id}/remove_router_interface", body)


def floating_ip(caller, network_id: str, **attrs) -> dict:
    body = {"floatingip": {"floating_network_id": network_id, **attrs}}
    return ok(call(caller, "POST", "/floatingips", body), 201)["floatingip"]
