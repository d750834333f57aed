"""The network controller's refusals, each carrying the networking API's fault type and status.

The API shows them as ``{"NeutronError": {"type": <type>, "message": <message>, "detail": ""}}`` with
``status``; other callers (the compute side) catch them by class.
"""

from __future__ import annotations


class NetworkError(Exception):
    status = 400
    type = "HTTPBadRequest"

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field  # the attribute at fault, when there is one


class BadRequest(NetworkError):
    """Input the API cannot take (Neutron's generic 400)."""


class InvalidInput(NetworkError):
    type = "InvalidInput"


class PolicyNotAuthorized(NetworkError):
    status = 403
    type = "PolicyNotAuthorized"


class NotFound(NetworkError):
    status = 404
    type = "NotFound"


class NetworkNotFound(NotFound):
    type = "NetworkNotFound"

    def __init__(self, network_id):
        super().__init__(f"Network {network_id} could not be found.")


class SubnetNotFound(NotFound):
    type = "SubnetNotFound"

    def __init__(self, subnet_id):
        super().__init__(f"Subnet {subnet_id} could not be found.")


class PortNotFound(NotFound):
    type = "PortNotFound"

    def __init__(self, port_id):
        super().__init__(f"Port {port_id} could not be found.")


class Conflict(NetworkError):
    status = 409
    type = "Conflict"


class NetworkInUse(Conflict):
    type = "NetworkInUse"

    def __init__(self, network_id):
        super().__init__(
            f"Unable to complete operation on network {network_id}. "
            "There are one or more ports still in use on the network."
        )


class SubnetInUse(Conflict):
    type = "SubnetInUse"

    def __init__(self, subnet_id):
        super().__init__(
            f"Unable to complete operation on subnet {subnet_id}: "
            "One or more ports have an IP allocation from this subnet."
        )


class IpAddressGenerationFailure(Conflict):
    type = "IpAddressGenerationFailure"

    def __init__(self, network_id):
        super().__init__(f"No more IP addresses available on network {network_id}.")


class IpAddressAlreadyAllocated(Conflict):
    type = "IpAddressAlreadyAllocated"

    def __init__(self, ip, subnet_id):
        super().__init__(f"IP address {ip} already allocated in subnet {subnet_id}")


class InvalidIpForSubnet(NetworkError):
    type = "InvalidIpForSubnet"

    def __init__(self, ip):
        super().__init__(f"IP address {ip} is not a valid IP for the specified subnet.", field="fixed_ips")


class InvalidIpForNetwork(NetworkError):
    type = "InvalidIpForNetwork"

    def __init__(self, ip):
        super().__init__(
            f"IP address {ip} is not a valid IP for any of the subnets on the specified network.", field="fixed_ips"
        )


class MacAddressInUse(Conflict):
    type = "MacAddressInUse"

    def __init__(self, network_id, mac):
        super().__init__(f"Unable to complete operation for network {network_id}. The mac address {mac} is in use.")


class TunnelIdInUse(Conflict):
    type = "TunnelIdInUse"

    def __init__(self, vni):
        super().__init__(f"Unable to create the network. The tunnel ID {vni} is in use.")


class FlatNetworkInUse(Conflict):
    type = "FlatNetworkInUse"

    def __init__(self, physnet):
        super().__init__(
            f"Unable to create the flat network. Physical network {physnet} is in use.",
            field="provider:physical_network",
        )


class NoNetworkAvailable(NetworkError):
    status = 503
    type = "NoNetworkAvailable"

    def __init__(self):
        super().__init__("Unable to create the network. No tenant network is available for allocation.")


class OverlappingAllocationPools(Conflict):
    type = "OverlappingAllocationPools"


class GatewayConflictWithAllocationPools(Conflict):
    type = "GatewayConflictWithAllocationPools"


class InvalidSharedSetting(Conflict):
    type = "InvalidSharedSetting"

    def __init__(self, network_name):
        super().__init__(
            f"Unable to reconfigure sharing settings for network {network_name}. Multiple tenants are using it."
        )


class OverQuota(Conflict):
    type = "OverQuota"

    def __init__(self, resource: str):
        super().__init__(f"Quota exceeded for resources: ['{resource}'].")
        self.resource = resource


class SecurityGroupNotFound(NotFound):
    type = "SecurityGroupNotFound"

    def __init__(self, group_id):
        super().__init__(f"Security group {group_id} does not exist")


class SecurityGroupRuleNotFound(NotFound):
    type = "SecurityGroupRuleNotFound"

    def __init__(self, rule_id):
        super().__init__(f"Security group rule {rule_id} does not exist")


class SecurityGroupInUse(Conflict):
    type = "SecurityGroupInUse"

    def __init__(self, group_id):
        super().__init__(f"Security Group {group_id} in use.")


class SecurityGroupRuleExists(Conflict):
    type = "SecurityGroupRuleExists"

    def __init__(self, rule_id):
        super().__init__(f"Security group rule already exists. Rule id is {rule_id}.")


class SecurityGroupCannotRemoveDefault(Conflict):
    type = "SecurityGroupCannotRemoveDefault"

    def __init__(self):
        super().__init__("Insufficient rights for removing default security group.")


class SecurityGroupCannotUpdateDefault(Conflict):
    type = "SecurityGroupCannotUpdateDefault"

    def __init__(self):
        super().__init__("Updating default security group not allowed.")


class PortSecurityAndIPRequiredForSecurityGroups(NetworkError):
    type = "PortSecurityAndIPRequiredForSecurityGroups"

    def __init__(self):
        super().__init__(
            "Port security must be enabled and port must have an IP address in order to use security groups."
        )


class PortSecurityPortHasSecurityGroup(Conflict):
    type = "PortSecurityPortHasSecurityGroup"

    def __init__(self):
        super().__init__(
            "Port has security group associated. Cannot disable port security or IP address until security group "
            "is removed"
        )


class ServicePortInUse(Conflict):
    type = "ServicePortInUse"

    def __init__(self, port_id, device_owner: str):
        super().__init__(
            f"Port {port_id} cannot be deleted directly via the port API: has device owner {device_owner}."
        )


class PortInUse(Conflict):
    type = "PortInUse"

    def __init__(self, network_id, port_id, device_id):
        super().__init__(
            f"Unable to complete operation on port {port_id} for network {network_id}. "
            f"Port already has an attached device {device_id}."
        )


class RouterNotFound(NotFound):
    type = "RouterNotFound"

    def __init__(self, router_id):
        super().__init__(f"Router {router_id} could not be found")


class RouterInUse(Conflict):
    type = "RouterInUse"

    def __init__(self, router_id):
        super().__init__(f"Router {router_id} still has ports")


class RouterInterfaceNotFound(NotFound):
    type = "RouterInterfaceNotFound"

    def __init__(self, router_id, port_id):
        super().__init__(f"Router {router_id} does not have an interface with id {port_id}")


class RouterInterfaceNotFoundForSubnet(NotFound):
    type = "RouterInterfaceNotFoundForSubnet"

    def __init__(self, router_id, subnet_id):
        super().__init__(f"Router {router_id} has no interface on subnet {subnet_id}")


class RouterInterfaceInUseByFloatingIP(Conflict):
    type = "RouterInterfaceInUseByFloatingIP"

    def __init__(self, router_id, subnet_id):
        super().__init__(
            f"Router interface for subnet {subnet_id} on router {router_id} cannot be deleted, "
            "as it is required by one or more floating IPs."
        )


class RouterExternalGatewayInUseByFloatingIp(Conflict):
    type = "RouterExternalGatewayInUseByFloatingIp"

    def __init__(self, router_id, network_id):
        super().__init__(
            f"Gateway cannot be updated for router {router_id}, since a gateway to external network {network_id} "
            "is required by one or more floating IPs."
        )


class FloatingIPNotFound(NotFound):
    type = "FloatingIPNotFound"

    def __init__(self, floating_ip_id):
        super().__init__(f"Floating IP {floating_ip_id} could not be found")


class ExternalGatewayForFloatingIPNotFound(NotFound):
    type = "ExternalGatewayForFloatingIPNotFound"

    def __init__(self, subnet_id, network_id, port_id):
        super().__init__(
            f"External network {network_id} is not reachable from subnet {subnet_id}.  Therefore, cannot associate "
            f"Port {port_id} with a Floating IP."
        )


class FloatingIPPortAlreadyAssociated(Conflict):
    type = "FloatingIPPortAlreadyAssociated"

    def __init__(self, floating_ip_address, floating_ip_id, port_id, fixed_ip, network_id):
        super().__init__(
            f"Cannot associate floating IP {floating_ip_address} ({floating_ip_id}) with port {port_id} using fixed "
            f"IP {fixed_ip}, as that fixed IP already has a floating IP on external network {network_id}."
        )
