"""``/extensions`` and ``/extensions/{alias}``: what this cloud offers of the compute API, named by the
aliases of the old extension mechanism.

The compute API deprecated extensions with 2.1 but still answers these at every version, so clients that
probe an alias before using a feature keep working. Only what is actually served here is listed; an alias
the cloud does not offer is 404. Every entry has the fixed ``namespace`` and ``updated`` the compute API
gives all of them, and no links.
"""

from __future__ import annotations

from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import NotFound

NAMESPACE = "http://docs.openstack.org/compute/ext/fake_xml"
UPDATED = "2014-12-03T00:00:00Z"

# (alias, name, description), sorted by alias as the compute API sorts them.
OFFERED: tuple[tuple[str, str, str], ...] = (
    ("OS-EXT-AZ", "ExtendedAvailabilityZone", "The availability zone of each server."),
    ("OS-EXT-IPS", "ExtendedIps", "The type (fixed or floating) of each server address."),
    ("OS-EXT-IPS-MAC", "ExtendedIpsMac", "The MAC address of each server address."),
    ("OS-EXT-SRV-ATTR", "ExtendedServerAttributes", "A server's host, instance name and boot details."),
    ("OS-EXT-STS", "ExtendedStatus", "A server's vm_state, task_state and power_state."),
    ("OS-FLV-DISABLED", "FlavorDisabled", "Whether a flavor is disabled."),
    ("OS-FLV-EXT-DATA", "FlavorExtraData", "A flavor's ephemeral disk size."),
    ("OS-SCH-HNT", "SchedulerHints", "Scheduler hints given when a server is created."),
    ("OS-SRV-USG", "ServerUsage", "When a server was launched and terminated."),
    ("os-access-ips", "AccessIPs", "A server's access addresses, as its owner sets them."),
    ("os-admin-actions", "AdminActions", "Admin server actions: reset state, inject network info."),
    ("os-aggregates", "Aggregates", "Host aggregates (admins)."),
    ("os-attach-interfaces", "AttachInterfaces", "Attaching and detaching a server's network interfaces."),
    ("os-availability-zone", "AvailabilityZone", "Availability zones: listing them and booting into one."),
    ("os-block-device-mapping", "BlockDeviceMapping", "Booting with block device mappings."),
    ("os-block-device-mapping-v2-boot", "BlockDeviceMappingV2Boot", "Booting with version 2 mappings."),
    ("os-config-drive", "ConfigDrive", "A config drive for every server."),
    ("os-console-auth-tokens", "ConsoleAuthTokens", "Looking up a console token (admins)."),
    ("os-console-output", "ConsoleOutput", "A server's console log, or its last lines."),
    ("os-consoles", "Consoles", "Remote consoles: a noVNC URL for a server's screen."),
    ("os-create-backup", "CreateBackup", "Backups of a server kept in a rotation."),
    ("os-evacuate", "Evacuate", "Rebuilding a server of a host that is down on another host (admins)."),
    ("os-extended-evacuate-find-host", "ExtendedEvacuateFindHost", "Evacuating to a host the scheduler picks."),
    ("os-extended-floating-ips", "ExtendedFloatingIps", "A fixed address to associate a floating IP with."),
    ("os-extended-hypervisors", "ExtendedHypervisors", "The detailed hypervisor fields."),
    ("os-extended-networks", "ExtendedNetworks", "The admin fields of the network proxy."),
    ("os-extended-quotas", "ExtendedQuotas", "Deleting a project's quotas, forcing an update (admins)."),
    ("os-extended-rescue-with-image", "ExtendedRescueWithImage", "Rescuing a server with an image of choice."),
    ("os-extended-services", "ExtendedServices", "Disabling a compute service with a reason (admins)."),
    ("os-extended-status", "ExtendedStatus", "A server's vm_state, task_state and power_state."),
    ("os-extended-volumes", "ExtendedVolumes", "The volumes attached to each server."),
    ("os-flavor-access", "FlavorAccess", "Sharing private flavors with projects."),
    ("os-flavor-extra-specs", "FlavorExtraSpecs", "A flavor's extra specs."),
    ("os-flavor-manage", "FlavorManage", "Creating and deleting flavors (admins)."),
    ("os-flavor-rxtx", "FlavorRxtx", "A flavor's rxtx_factor."),
    ("os-flavor-swap", "FlavorSwap", "A flavor's swap size."),
    ("os-floating-ip-pools", "FloatingIpPools", "The pools floating IPs come from."),
    ("os-floating-ips", "FloatingIps", "Floating IPs of the project, through the network controller."),
    ("os-hosts", "Hosts", "Compute hosts, their resources and scheduling to them (admins, until 2.42)."),
    ("os-hypervisor-status", "HypervisorStatus", "The status and state of each hypervisor."),
    ("os-hypervisors", "Hypervisors", "Hypervisors and their resources (admins)."),
    ("os-instance-actions", "InstanceActions", "The actions taken on a server and their events."),
    ("os-instance_usage_audit_log", "OSInstanceUsageAuditLog", "The usage audit (none runs here; admins)."),
    ("os-keypairs", "Keypairs", "Key pairs, imported or generated."),
    ("os-lock-server", "LockServer", "Locking and unlocking a server."),
    ("os-migrate-server", "MigrateServer", "Cold and live migration of servers (admins)."),
    ("os-migrations", "Migrations", "The migrations of servers (admins)."),
    ("os-multiple-create", "MultipleCreate", "Creating several servers in one request."),
    ("os-networks", "Networks", "The networks a project can use, in the network proxy's shape."),
    ("os-pause-server", "PauseServer", "Pausing and unpausing a server."),
    ("os-personality", "Personality", "Files injected at boot (until 2.56)."),
    ("os-quota-class-sets", "QuotaClasses", "Quota classes (admins)."),
    ("os-quota-sets", "Quotas", "Project quotas."),
    ("os-rescue", "Rescue", "Rescuing and unrescuing a server."),
    ("os-security-groups", "SecurityGroups", "Security groups, through the network controller."),
    ("os-server-diagnostics", "ServerDiagnostics", "A server's diagnostics (admins)."),
    ("os-server-external-events", "ServerExternalEvents", "Events of other services about servers."),
    ("os-server-group-quotas", "ServerGroupQuotas", "Quotas of server groups and their members."),
    ("os-server-groups", "ServerGroups", "Server groups: affinity and anti-affinity."),
    ("os-server-list-multi-status", "ServerListMultiStatus", "Listing servers by several statuses."),
    ("os-server-password", "ServerPassword", "A server's password (always empty here)."),
    ("os-server-sort-keys", "ServerSortKeys", "Sorting server lists."),
    ("os-server-start-stop", "ServerStartStop", "Starting and stopping a server."),
    ("os-services", "Services", "The compute service of each host (admins)."),
    ("os-shelve", "Shelve", "Shelving, offloading and unshelving a server."),
    ("os-simple-tenant-usage", "SimpleTenantUsage", "Usage of servers per project over a period."),
    ("os-suspend-server", "SuspendServer", "Suspending and resuming a server."),
    ("os-tenant-networks", "OSTenantNetworks", "The networks a project may use, in the network proxy's shape."),
    ("os-used-limits", "UsedLimits", "The usage beside each absolute limit."),
    ("os-used-limits-for-admin", "UsedLimitsForAdmin", "Another project's limits and usage (admins)."),
    ("os-user-data", "UserData", "User data given to a server at boot."),
    ("os-user-quotas", "UserQuotas", "Quotas of a user within a project."),
    ("os-volume-attachment-update", "VolumeAttachmentUpdate", "Updating a volume attachment."),
    ("os-volumes", "Volumes", "Volume attachments of servers (the volume proxy itself is not served)."),
)


def extension_body(alias: str, name: str, description: str) -> dict:
    return {
        "name": name,
        "alias": alias,
        "description": description,
        "namespace": NAMESPACE,
        "updated": UPDATED,
        "links": [],
    }


class ExtensionListView(ComputeAPIView):
    def get(self, request):
        return Response({"extensions": [extension_body(*entry) for entry in OFFERED]})


class ExtensionView(ComputeAPIView):
    def get(self, request, alias: str):
        for entry in OFFERED:
            if entry[0] == alias:
                return Response({"extension": extension_body(*entry)})
        raise NotFound("The resource could not be found.")
