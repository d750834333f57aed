"""The host's network data plane: what a ``HostNetworkPlan`` becomes on this host (see ``base``)."""

from __future__ import annotations

from compute_tasks.config import HostConfig
from compute_tasks.dataplane.base import Dataplane, NullDataplane


def load_dataplane(config: HostConfig) -> Dataplane:
    """The data plane COMPUTE_DATAPLANE names, for the host ``config`` describes."""
    if config.dataplane == "linux":
        from compute_tasks.dataplane.linux import LinuxDataplane

        return LinuxDataplane(
            config.host,
            config.state_dir,
            tunnel_address=config.tunnel_address,
            vxlan_port=config.vxlan_port,
            namespace=config.network_namespace,
            physical_networks=config.physical_networks,
        )
    return NullDataplane(
        config.host,
        config.state_dir,
        tunnel_address=config.tunnel_address,
        physical_networks=config.physical_networks,
    )


__all__ = ["Dataplane", "NullDataplane", "load_dataplane"]
