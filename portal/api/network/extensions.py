"""The API extensions this cloud implements, as ``GET /v2.0/extensions`` lists them (clients look some up
by alias before they send their attributes)."""

from __future__ import annotations

UPDATED = "2026-12-01T00:00:00-00:00"

_EXTENSIONS = [
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical networks"),
    ("external-net", "Neutron external network", "Adds external network attribute to network resource."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external application"),
    ("port-security", "Port Security", "Provides port security"),
    ("security-group", "security-group", "The security groups extension."),
    (
        "stateful-security-group",
        "Stateful security group",
        "Indicates if the security group is stateful or not",
    ),
    (
        "router",
        "Neutron L3 Router",
        "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks "
        "via a NAT gateway.",
    ),
    (
        "ext-gw-mode",
        "Neutron L3 Configurable external gateway mode",
        "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway",
    ),
    (
        "fip-port-details",
        "Floating IP Port Details Extension",
        "Add port_details attribute to Floating IP resource",
    ),
    ("quotas", "Quota management support", "Expose functions for quotas management per project"),
    ("quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource."),
    ("standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes"),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "This extension will display the revision number of neutron resources.",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.",
    ),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled."),
    ("pagination", "Pagination support", "Extension that indicates that pagination is enabled."),
    ("sorting", "Sorting support", "Extension that indicates that sorting is enabled."),
    ("filter-validation", "Filter parameters validation", "Provides validation on filter parameters."),
]

EXTENSIONS: dict[str, dict] = {
    alias: {"alias": alias, "name": name, "description": description, "updated": UPDATED, "links": []}
    for alias, name, description in _EXTENSIONS
}
