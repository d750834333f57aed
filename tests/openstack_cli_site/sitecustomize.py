"""Loaded at start by every ``openstack`` command the tests run (``tests/openstack_cli.py`` puts this directory
on its ``PYTHONPATH``): the CLI's waits (``--wait`` on create, delete, reboot, image create…) look at the
resource every ``OS_TEST_WAIT_POLL_SECONDS`` instead of every 2 to 5 seconds.

Only the pause between two looks changes: the CLI still asks the cloud the same questions, waits for the
same statuses and fails on the same errors. Against a test cloud that settles in a fraction of a second,
the CLI's own 5 s naps were most of what its commands took.
"""

import inspect
import os

POLL = float(os.environ.get("OS_TEST_WAIT_POLL_SECONDS") or 0)


def _capped(function, name: str, default: float):
    signature = inspect.signature(function)

    def wait(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        bound.arguments[name] = min(bound.arguments[name] or default, POLL)
        return function(*bound.args, **bound.kwargs)

    wait.__wrapped__ = function
    return wait


def _install() -> None:
    try:
        from openstack import resource
        from osc_lib import utils
    except ImportError:  # another program of this virtualenv, without the CLI's libraries
        return
    # The CLI's own waits (osc-lib).
    utils.wait_for_status = _capped(utils.wait_for_status, "sleep_time", 5)
    utils.wait_for_delete = _capped(utils.wait_for_delete, "sleep_time", 5)
    # The SDK's (``compute_client.wait_for_delete`` and the like reach these through the module).
    resource.wait_for_status = _capped(resource.wait_for_status, "interval", 2)
    resource.wait_for_delete = _capped(resource.wait_for_delete, "interval", 2)


if POLL > 0:
    _install()
