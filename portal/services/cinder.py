"""The control plane's Cinder client: python-cinderclient, authenticated the way this cloud is configured.

- With Keystone (``settings.KEYSTONE['AUTH_URL']``): the block-storage endpoint comes from the service
  catalog (``block-storage``, or one of its aliases such as ``volumev3``). A call made for a user with
  their Keystone token carries that token, against the user's project; calls the cloud makes on its own
  (the conductor's, but for making a boot's new volumes, or for users who signed in with a password)
  carry the cloud's service user's token, against the service user's own project (Cinder wants the
  token's project in the URL), and reach other projects' volumes by id as an admin. Every call also
  carries the service user's token as ``X-Service-Token``, which is how Cinder knows the cloud is a
  service (it then lets it delete attachments it made, and accepts a user token that expired during a
  long task); Cinder accepts it only from a user with the ``service`` role.
- Without Keystone: ``settings.CINDER['ENDPOINT']`` names a Cinder in noauth mode
  (``noauth_include_project_id``); the project id goes into the URL, and ``X-Service-Roles: service``
  says what the service token says under Keystone.

Failures become the exceptions below; callers never see cinderclient's or keystoneauth's own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cinderclient import client as cinder_client
from cinderclient import exceptions as cinder_exceptions
from cinderclient.contrib import noauth
from django.conf import settings
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import service_token, session, token_endpoint

from portal.auth import keystone

log = logging.getLogger(__name__)

T = TypeVar("T")

# 3.27 brought attachments, 3.44 their completion (``os-complete``).
API_VERSION = "3.44"
# The project a volume belongs to, which Cinder shows to admins (and so to the cloud asking as one).
OWNER_ATTRIBUTE = "os-vol-tenant-attr:tenant_id"
SNAPSHOT_OWNER_ATTRIBUTE = "os-extended-snapshot-attributes:project_id"
NOAUTH_USER = "cloud"


class BlockStorageError(Exception):
    """Cinder said no, or could not be asked. ``status`` is the HTTP status the compute API answers with."""

    status = 409


class BlockStorageUnavailable(BlockStorageError):
    """No Cinder is configured, or it cannot be reached, or it failed (5xx)."""


class BlockStorageNotConfigured(BlockStorageUnavailable):
    """This cloud has no Cinder at all: a request for volumes can never be met here (400)."""

    status = 400


class VolumeNotFound(BlockStorageError):
    status = 404


class VolumeRefused(BlockStorageError):
    """Cinder refused the request as invalid for the volume's state (its 400)."""

    status = 400


def _plain(answer: Any) -> dict[str, Any]:
    """cinderclient answers with resources or plain dicts, depending on the call and its version."""
    return dict(answer.to_dict() if hasattr(answer, "to_dict") else answer)


def configured() -> bool:
    return bool(settings.CINDER["ENDPOINT"]) or keystone.enabled()


class CinderAPI:
    """The few calls the cloud makes, on one project's behalf, each turning failures into our errors."""

    def __init__(self, client: Any, project_id: str, *, elevated: bool = False):
        self.client = client
        self.project_id = project_id
        # Asking as the cloud (noauth, or the service user) rather than as the project's own user: Cinder
        # then answers as to an admin, for every project, so each answer is checked to be the project's.
        self.elevated = elevated

    # --- volumes ---------------------------------------------------------------------------------
    def volume(self, volume_id: str) -> dict[str, Any]:
        """The project's volume ``volume_id``; VolumeNotFound when it is another project's."""
        volume = self._volume(volume_id)
        owner = volume.get(OWNER_ATTRIBUTE)
        if owner is not None and owner.replace("-", "") != self.project_id.replace("-", ""):
            raise VolumeNotFound(f"Volume {volume_id} could not be found.")
        return volume

    def _volume(self, volume_id: str) -> dict[str, Any]:
        return self._call(f"volume {volume_id}", lambda: self.client.volumes.get(volume_id).to_dict())

    def volumes(self, *, status: str | None = None) -> list[dict[str, Any]]:
        """The project's volumes (with ``status`` only, if given), as Cinder lists them in detail."""
        search: dict[str, Any] = {"status": status} if status else {}
        if self.elevated:
            search.update(all_tenants=1, project_id=self.project_id)
        return self._call(
            "the project's volumes",
            lambda: [v.to_dict() for v in self.client.volumes.list(search_opts=search or None)],
        )

    def create_volume(
        self, *, size: int, name: str, description: str = "", metadata: dict[str, str] | None = None
    ) -> dict[str, Any]:
        return self._call(
            "a new volume",
            lambda: self.client.volumes.create(
                size=size, name=name, description=description, metadata=metadata or {}
            ).to_dict(),
        )

    # --- snapshots -------------------------------------------------------------------------------
    def snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """The project's snapshot ``snapshot_id``; VolumeNotFound when it is another project's."""
        snapshot = self._call(
            f"snapshot {snapshot_id}", lambda: self.client.volume_snapshots.get(snapshot_id).to_dict()
        )
        owner = snapshot.get(SNAPSHOT_OWNER_ATTRIBUTE)
        if owner is not None and owner.replace("-", "") != self.project_id.replace("-", ""):
            raise VolumeNotFound(f"Snapshot {snapshot_id} could not be found.")
        return snapshot

    def snapshots(self) -> list[dict[str, Any]]:
        search: dict[str, Any] = {"all_tenants": 1, "project_id": self.project_id} if self.elevated else {}
        return self._call(
            "the project's snapshots",
            lambda: [s.to_dict() for s in self.client.volume_snapshots.list(search_opts=search or None)],
        )

    def create_snapshot(self, volume_id: str, *, force: bool, name: str, description: str) -> dict[str, Any]:
        self.volume(volume_id)  # the project's own
        return self._call(
            f"volume {volume_id}",
            lambda: self.client.volume_snapshots.create(
                volume_id, force=force, name=name, description=description
            ).to_dict(),
        )

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshot(snapshot_id)  # the project's own
        with contextlib.suppress(VolumeNotFound):  # gone already
            self._call(f"snapshot {snapshot_id}", lambda: self.client.volume_snapshots.delete(snapshot_id))

    def set_bootable(self, volume_id: str) -> None:
        self._call(f"volume {volume_id}", lambda: self.client.volumes.set_bootable(volume_id, True))

    def delete_volume(self, volume_id: str) -> None:
        with contextlib.suppress(VolumeNotFound):  # gone already
            self._call(f"volume {volume_id}", lambda: self.client.volumes.delete(volume_id))

    def wait_for_volume(self, volume_id: str, status: str, *, timeout: float) -> dict[str, Any]:
        """The volume (one the cloud made: it is not checked to be the project's, since a volume made
        without the user's token is the service user's) once it has ``status``; BlockStorageError if it
        errs or takes longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = 0.2
        while True:
            volume = self._volume(volume_id)
            if volume["status"] == status:
                return volume
            if volume["status"].startswith("error"):
                raise BlockStorageError(f"Volume {volume_id} went to status {volume['status']}.")
            if time.monotonic() > deadline:
                raise BlockStorageError(f"Volume {volume_id} is still {volume['status']} after {timeout:.0f}s.")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    # --- attachments (microversion 3.27+, completion 3.44+) ------------------------------------
    def reserve(self, volume_id: str, instance_uuid: str) -> dict[str, Any]:
        """A new attachment without a connector: the volume becomes ``reserved`` for the instance."""
        return self._call(
            f"volume {volume_id}",
            lambda: _plain(self.client.attachments.create(volume_id, None, instance_uuid)),
        )

    def connect(self, attachment_id: str, connector: dict[str, Any]) -> dict[str, Any]:
        """The host's connector in, ``connection_info`` out (flattened, as the attachments API gives it)."""
        attachment = self._call(
            f"attachment {attachment_id}", lambda: _plain(self.client.attachments.update(attachment_id, connector))
        )
        return dict(attachment.get("connection_info") or {})

    def complete(self, attachment_id: str) -> None:
        self._call(f"attachment {attachment_id}", lambda: self.client.attachments.complete(attachment_id))

    def delete_attachment(self, attachment_id: str) -> None:
        with contextlib.suppress(VolumeNotFound):  # gone already
            self._call(f"attachment {attachment_id}", lambda: self.client.attachments.delete(attachment_id))

    def _call(self, what: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except cinder_exceptions.NotFound:
            raise VolumeNotFound(f"{what[0].upper()}{what[1:]} could not be found.") from None
        except cinder_exceptions.ClientException as exc:
            code = getattr(exc, "code", None) or 500
            message = getattr(exc, "message", None) or str(exc)
            if isinstance(code, int) and code >= 500:
                log.warning("Cinder failed on %s: HTTP %s %s", what, code, message)
                raise BlockStorageUnavailable(f"The block storage service failed: {message}") from None
            if code == 401:
                # Both tokens came from Keystone moments ago (the user's was validated for this request),
                # so the usual cause is a service token without the role Cinder's service_token_roles asks for.
                log.error(
                    "Cinder refused the cloud's credentials on %s (HTTP 401): does the service user "
                    "(KEYSTONE_USERNAME) have the 'service' role in Keystone?",
                    what,
                )
                raise BlockStorageUnavailable("The block storage service refused the cloud's credentials.") from None
            if code == 400:
                raise VolumeRefused(f"Invalid volume: {message}") from None
            raise BlockStorageError(f"The block storage service refused: {message}") from None
        except (ks_exceptions.ConnectionError, ks_exceptions.DiscoveryFailure, cinder_exceptions.ConnectionError):
            log.warning("Cinder is unreachable (%s)", what)
            raise BlockStorageUnavailable("The block storage service is unreachable; try again later.") from None
        except ks_exceptions.EndpointNotFound:
            raise BlockStorageUnavailable("There is no block storage service in the service catalog.") from None
        except keystone.KeystoneUnavailable as exc:
            raise BlockStorageUnavailable(f"The identity service is unavailable: {exc}") from None
        except ks_exceptions.HttpError as exc:
            raise BlockStorageUnavailable(f"The block storage service failed: HTTP {exc.http_status}") from None


def cinder_api(*, project_id: str, user_token: str | None = None, timeout: float | None = None) -> CinderAPI:
    """A client acting in ``project_id``: as the user holding ``user_token`` (Keystone only), else as the
    cloud itself; each request waits ``timeout`` seconds at most (``CINDER['TIMEOUT']`` by default).
    BlockStorageUnavailable when no Cinder is configured."""
    config = settings.CINDER
    timeout = timeout or config["TIMEOUT"]
    if keystone.enabled():
        auth = _keystone_auth(project_id, user_token)
        sess = session.Session(auth=auth, timeout=timeout)
    elif config["ENDPOINT"]:
        auth = noauth.CinderNoAuthPlugin(user_id=NOAUTH_USER, project_id=project_id, endpoint=config["ENDPOINT"])
        sess = session.Session(auth=auth, timeout=timeout, additional_headers={"X-Service-Roles": "service"})
    else:
        raise BlockStorageNotConfigured("This cloud has no block storage service: volumes are not available.")
    client = cinder_client.Client(API_VERSION, session=sess, retries=0)
    return CinderAPI(client, project_id, elevated=user_token is None)


def _keystone_auth(project_id: str, user_token: str | None):
    service = keystone.client()
    try:
        service_session = service.service_session()
        url = service_session.get_endpoint(
            service_type=settings.CINDER["SERVICE_TYPE"],
            interface=settings.CINDER["INTERFACE"],
            region_name=service.config["REGION_NAME"],
        )
        service_project = service_session.get_project_id()
    except ks_exceptions.EndpointNotFound:
        raise BlockStorageUnavailable("There is no block storage service in the service catalog.") from None
    except (ks_exceptions.ConnectionError, ks_exceptions.DiscoveryFailure):
        raise BlockStorageUnavailable("The identity service is unreachable; try again later.") from None
    except ks_exceptions.Unauthorized:
        raise BlockStorageUnavailable("Keystone refused the cloud's service credentials.") from None
    if not url:
        raise BlockStorageUnavailable("There is no block storage service in the service catalog.")
    if user_token:
        user_auth = token_endpoint.Token(project_endpoint(url, project_id, service_project), user_token)
    else:
        # Cinder refuses a URL naming another project than the token's ("Malformed request url"): the
        # service user, scoped to its own project, reaches other projects' volumes by id, as an admin.
        user_auth = _FixedEndpoint(service_session.auth, project_endpoint(url, service_project, service_project))
    return service_token.ServiceTokenAuthWrapper(user_auth=user_auth, service_auth=service_session.auth)


def project_endpoint(url: str, project_id: str, catalog_project_id: str | None) -> str:
    """The catalog's URL for the block-storage API, pointed at ``project_id``.

    Catalogs hold it either with the token's project at the end (``…/v3/<project>``, the usual template)
    or without (``…/v3``); either way the result is ``…/v3/<project_id>``.
    """
    url = url.rstrip("/")
    head, _, last = url.rpartition("/")
    if catalog_project_id and last.replace("-", "") == catalog_project_id.replace("-", ""):
        url = head
    return f"{url}/{project_id}"


class _FixedEndpoint(token_endpoint.Token):
    """The service user's own (refreshing) token against a given endpoint."""

    def __init__(self, auth, endpoint: str):
        super().__init__(endpoint, None)
        self._auth = auth

    def get_token(self, session, **kwargs):
        return self._auth.get_token(session)
