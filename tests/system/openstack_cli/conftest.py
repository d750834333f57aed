from tests.openstack_cli import cli, cli_cloud  # noqa: F401 (fixtures)
