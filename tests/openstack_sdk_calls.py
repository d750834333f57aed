"""One openstacksdk call against the live cloud, run by ``tests/openstack_sdk.py`` with the Python of
.venv-openstack (never imported by the test suite, whose virtualenv has no openstacksdk).

``python openstack_sdk_calls.py CALL`` reads ``{"connect": {...}, "args": {...}}`` on its standard input,
makes a connection with ``openstack.connect(**connect)``, runs ``CALL(connection, **args)`` and prints one
JSON line: ``{"result": ...}``, or ``{"error": {"status": ..., "type": ..., "message": ...}}`` when the cloud
refused (an HTTP error, at authentication or later). Anything else is a crash, with its traceback."""

from __future__ import annotations

import json
import sys

import openstack
from keystoneauth1 import exceptions as auth_exceptions
from openstack import exceptions as sdk_exceptions

# Seconds between two looks while waiting for a server: the test cloud settles in a fraction of a second.
POLL = 0.2


def whoami(connection) -> dict:
    """What the token says: user, project, roles, and the catalog's public URL of each service type."""
    access = connection.session.auth.get_access(connection.session)
    return {
        "user_id": access.user_id,
        "project_id": access.project_id,
        "roles": sorted(access.role_names),
        "catalog": {
            service["type"]: [e["url"] for e in service["endpoints"] if e["interface"] == "public"]
            for service in access.service_catalog.catalog
        },
    }


def inventory(connection) -> dict:
    """The names (and ids) of what the caller's project sees of each kind."""
    return {
        "servers": [{"id": s.id, "name": s.name, "status": s.status} for s in connection.compute.servers()],
        "flavors": sorted(f.name for f in connection.compute.flavors()),
        "images": [{"id": i.id, "name": i.name} for i in connection.image.images()],
        "networks": sorted(n.name for n in connection.network.networks()),
    }


def _server(server) -> dict:
    return {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "project_id": server.project_id,
        "user_id": server.user_id,
        "addresses": server.addresses,
    }


def server_create(connection, *, name: str, image: str, flavor: str, networks) -> dict:
    """Boots a server from names, as a script would, and waits for it to be ACTIVE."""
    server = connection.compute.create_server(
        name=name,
        image_id=connection.image.find_image(image, ignore_missing=False).id,
        flavor_id=connection.compute.find_flavor(flavor, ignore_missing=False).id,
        networks=networks,
    )
    return _server(connection.compute.wait_for_server(server, interval=POLL, wait=120))


def server_show(connection, *, server_id: str) -> dict:
    return _server(connection.compute.get_server(server_id))


def server_delete(connection, *, server_id: str) -> None:
    server = connection.compute.get_server(server_id)
    connection.compute.delete_server(server)
    connection.compute.wait_for_delete(server, interval=POLL, wait=120)


def application_credential_create(connection, *, name: str, roles: list[str]) -> dict:
    credential = connection.identity.create_application_credential(
        user=connection.current_user_id, name=name, roles=[{"name": role} for role in roles]
    )
    return {
        "id": credential.id,
        "secret": credential.secret,
        "project_id": credential.project_id,
        "roles": [role["name"] for role in credential.roles],
    }


def application_credential_delete(connection, *, credential_id: str) -> None:
    connection.identity.delete_application_credential(connection.current_user_id, credential_id, ignore_missing=False)


CALLS = {
    call.__name__: call
    for call in (
        whoami,
        inventory,
        server_create,
        server_show,
        server_delete,
        application_credential_create,
        application_credential_delete,
    )
}


def main() -> None:
    request = json.load(sys.stdin)
    connection = openstack.connect(**request["connect"])
    try:
        answer = {"result": CALLS[sys.argv[1]](connection, **request["args"])}
    except sdk_exceptions.HttpException as error:
        answer = {"error": {"status": error.status_code, "type": type(error).__name__, "message": str(error)}}
    except auth_exceptions.HttpError as error:
        answer = {"error": {"status": error.http_status, "type": type(error).__name__, "message": str(error)}}
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
