from django.urls import path

from . import account, console, dashboard, flavors, images, instances, keypairs, live, networks, volumes

app_name = "portal"
urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("dashboard/summary", dashboard.dashboard_summary, name="dashboard-summary"),
    path("login/", account.LoginView.as_view(), name="login"),
    path("logout/", account.LogoutView.as_view(), name="logout"),
    path("project/", account.switch_project, name="switch-project"),
    path("instances/", instances.instance_list, name="instances"),
    path("instances/events", live.instance_list_events, name="instance-events"),
    path("instances/launch/", instances.instance_launch, name="launch"),
    path("instances/<uuid:server_id>/", instances.instance_detail, name="instance"),
    path("instances/<uuid:server_id>/events", live.instance_detail_events, name="instance-detail-events"),
    path("instances/<uuid:server_id>/action", instances.instance_action, name="instance-action"),
    path("instances/<uuid:server_id>/volumes/attach", volumes.volume_attach, name="volume-attach"),
    path("instances/<uuid:server_id>/volumes/<uuid:volume_id>/detach", volumes.volume_detach, name="volume-detach"),
    path("instances/<uuid:server_id>/interfaces/attach", networks.interface_attach, name="interface-attach"),
    path(
        "instances/<uuid:server_id>/interfaces/<uuid:port_id>/detach",
        networks.interface_detach,
        name="interface-detach",
    ),
    path("instances/<uuid:server_id>/console/", console.console_page, name="console"),
    path("instances/<uuid:server_id>/console/token", console.console_token, name="console-token"),
    path("instances/<uuid:server_id>/console/session", console.console_session, name="console-session"),
    path("keypairs/", keypairs.keypair_list, name="keypairs"),
    path("keypairs/<str:name>/delete", keypairs.keypair_remove, name="keypair-delete"),
    path("images/", images.image_list, name="images"),
    path("images/upload/", images.image_upload_page, name="image-upload"),
    path("flavors/", flavors.flavor_list, name="flavors"),
    path("networks/", networks.network_list, name="networks"),
    path("networks/<uuid:network_id>/delete", networks.network_remove, name="network-delete"),
    path("networks/subnets/<uuid:subnet_id>/delete", networks.subnet_remove, name="subnet-delete"),
    path("volumes/", volumes.volume_list, name="volumes"),
    path("volumes/<uuid:volume_id>/delete", volumes.volume_remove, name="volume-delete"),
]
