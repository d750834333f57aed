# The compute worker's fixtures (a real worker in a subprocess and the test's control plane), shared here.
from tests.integration.compute_tasks.test_compute_worker import broker, control_plane, host, worker  # noqa: F401
