from tests.openstack_cli import builtin_cli_cloud, cli, cli_cloud, cli_identity, identity_cli_cloud  # noqa: F401 (fixtures)
