"""The operators' admin: one module per concern, every write through the services the API uses."""

from . import aggregates, consoles, flavors, host_trust, hosts, identity, images, instances, quotas  # noqa: F401 - registers
