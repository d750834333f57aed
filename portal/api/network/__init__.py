"""The networking API v2.0 (the shapes of OpenStack Neutron), mounted at ``/networking/``."""
