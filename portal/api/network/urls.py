"""The networking API, mounted at ``/networking/``: version discovery, then ``/networking/v2.0/...``."""

from django.urls import path

from . import floating_ips, networks, ports, quotas, routers, security_groups, subnets, views

V = "v2.0"
Q = f"{V}/quotas/<str:target_project_id>"

urlpatterns = [
    path("", views.VersionsView.as_view(), name="networking-versions"),
    path(f"{V}/", views.V2RootView.as_view(), name="networking-v2"),
    path(f"{V}/extensions", views.ExtensionsView.as_view(), name="networking-extensions"),
    path(f"{V}/extensions/<str:alias>", views.ExtensionView.as_view(), name="networking-extension"),
    path(f"{V}/networks", networks.NetworksView.as_view(), name="networking-networks"),
    path(f"{V}/networks/<str:network_id>", networks.NetworkView.as_view(), name="networking-network"),
    path(f"{V}/subnets", subnets.SubnetsView.as_view(), name="networking-subnets"),
    path(f"{V}/subnets/<str:subnet_id>", subnets.SubnetView.as_view(), name="networking-subnet"),
    path(f"{V}/ports", ports.PortsView.as_view(), name="networking-ports"),
    path(f"{V}/ports/<str:port_id>", ports.PortView.as_view(), name="networking-port"),
    path(f"{V}/security-groups", security_groups.SecurityGroupsView.as_view(), name="networking-security-groups"),
    path(
        f"{V}/security-groups/<str:group_id>",
        security_groups.SecurityGroupView.as_view(),
        name="networking-security-group",
    ),
    path(
        f"{V}/security-group-rules",
        security_groups.SecurityGroupRulesView.as_view(),
        name="networking-security-group-rules",
    ),
    path(
        f"{V}/security-group-rules/<str:rule_id>",
        security_groups.SecurityGroupRuleView.as_view(),
        name="networking-security-group-rule",
    ),
    path(f"{V}/routers", routers.RoutersView.as_view(), name="networking-routers"),
    path(f"{V}/routers/<str:router_id>", routers.RouterView.as_view(), name="networking-router"),
    path(
        f"{V}/routers/<str:router_id>/add_router_interface",
        routers.RouterAddInterfaceView.as_view(),
        name="networking-router-add-interface",
    ),
    path(
        f"{V}/routers/<str:router_id>/remove_router_interface",
        routers.RouterRemoveInterfaceView.as_view(),
        name="networking-router-remove-interface",
    ),
    path(f"{V}/floatingips", floating_ips.FloatingIPsView.as_view(), name="networking-floatingips"),
    path(f"{V}/floatingips/<str:floating_ip_id>", floating_ips.FloatingIPView.as_view(), name="networking-floatingip"),
    path(f"{V}/quotas", quotas.QuotasView.as_view(), name="networking-quotas"),
    path(Q, quotas.QuotaView.as_view(), name="networking-quota"),
    path(f"{Q}/default", quotas.QuotaDefaultView.as_view(), name="networking-quota-default"),
    path(f"{Q}/details", quotas.QuotaDetailsView.as_view(), name="networking-quota-details"),
]
