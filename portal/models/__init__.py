from .aggregate import AVAILABILITY_ZONE_KEY, Aggregate
from .console import ConsoleSession, ConsoleToken
from .flavor import Flavor, FlavorAccess
from .host import ComputeHost, HostCredential, HostSample, MessageRefusal, SeenMessage
from .identity import Membership, Project, Role, UserIdentity
from .identity_token import ApplicationCredential, IdentityToken, secret_hash
from .image import Image
from .instance import Instance, InstanceAction, InstanceActionEvent, InstanceFault, InstanceTag
from .keypair import Keypair
from .migration import HostDrain, HostDrainItem, Migration
from .network import (
    FloatingIP,
    HostNetworkState,
    IPAllocation,
    Network,
    Port,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)
from .quota import QuotaClassLimit, QuotaLimit
from .server_group import ServerGroup
from .sign_in import FailedSignIn
from .volume import BlockDeviceMapping

__all__ = [
    "AVAILABILITY_ZONE_KEY",
    "Aggregate",
    "ApplicationCredential",
    "BlockDeviceMapping",
    "ComputeHost",
    "ConsoleSession",
    "ConsoleToken",
    "FailedSignIn",
    "Flavor",
    "FlavorAccess",
    "HostCredential",
    "HostDrain",
    "HostDrainItem",
    "HostNetworkState",
    "HostSample",
    "IPAllocation",
    "IdentityToken",
    "Image",
    "Instance",
    "InstanceAction",
    "InstanceActionEvent",
    "InstanceFault",
    "InstanceTag",
    "Keypair",
    "Membership",
    "MessageRefusal",
    "Migration",
    "Network",
    "Port",
    "Router",
    "FloatingIP",
    "Project",
    "UserIdentity",
    "QuotaClassLimit",
    "QuotaLimit",
    "Role",
    "SeenMessage",
    "ServerGroup",
    "SecurityGroup",
    "SecurityGroupRule",
    "Subnet",
    "secret_hash",
]
