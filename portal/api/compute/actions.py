"""``POST /servers/{id}/action`` and ``POST /servers/{id}/remote-consoles``."""

from __future__ import annotations

import secrets

from django.conf import settings
from rest_framework.response import Response

from portal.api.base import ComputeAPIView
from portal.api.errors import APIError, BadRequest, Conflict, Forbidden, NotFound
from portal.selectors.availability_zones import available_zone_names, default_zone
from portal.selectors.flavors import flavor_get
from portal.selectors.images import image_get
from portal.selectors.keypairs import keypair_get
from portal.services import actions as action_services
from portal.services import console_output, instance_ports, live_migrations, shelving
from portal.services import consoles as console_services
from portal.services import instances as instance_services
from portal.services import moves as move_services
from portal.services.images import ImageError, ImageForbidden, ImageQuotaExceeded, ImageTooLarge
from portal.services.lifecycle import StateConflict
from portal.services.network_errors import NetworkError
from portal.services.quotas import QuotaExceeded

from .links import links
from .serializers import (
    ConsoleOutputSerializer,
    CreateImageSerializer,
    EvacuateSerializer,
    LiveMigrateSerializer,
    LockSerializer,
    MigrateSerializer,
    RebootSerializer,
    RebuildSerializer,
    RemoteConsoleSerializer,
    RescueSerializer,
    ResetStateSerializer,
    ResizeSerializer,
)
from .server_views import server_brief
from .servers import get_instance_or_404


class ServiceUnavailable(APIError):
    status_code = 503
    default_detail = "The service is unavailable; try again later."


def _args(serializer_class, args, request, *, required: bool = True):
    """The action's argument object, validated; ``null`` counts as an empty object where allowed."""
    if args is None and not required:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest("The action's argument must be an object.")
    serializer = serializer_class(data=args, context={"api_version": request.api_version})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _single_action(body) -> tuple[str, object]:
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("The request body must be an object with exactly one action.")
    return next(iter(body.items()))


class ServerActionView(ComputeAPIView):
    def post(self, request, server_id):
        name, args = _single_action(request.data)
        handler = getattr(self, "action_" + name.replace("-", "_"), None)
        if handler is None or name not in _ACTIONS:
            raise BadRequest(f"There is no such action: {name[:64]}")
        self.require_write()
        instance = get_instance_or_404(self, server_id)
        try:
            return handler(request, instance, args)
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        except instance_services.InvalidRequest as exc:
            raise BadRequest(str(exc)) from None
        except (action_services.NotAllowed, console_services.ConsoleForbidden, QuotaExceeded) as exc:
            raise Forbidden(str(exc)) from None

    def _simple(self, instance, action: str):
        action_services.instance_action(ctx=self.ctx, instance=instance, action=action)
        return Response(status=202)

    def action_os_start(self, request, instance, args):
        return self._simple(instance, "start")

    def action_os_stop(self, request, instance, args):
        return self._simple(instance, "stop")

    def action_reboot(self, request, instance, args):
        serializer = RebootSerializer(data=args if isinstance(args, dict) else {})
        serializer.is_valid(raise_exception=True)
        hard = serializer.validated_data["type"].upper() == "HARD"
        return self._simple(instance, "reboot_hard" if hard else "reboot")

    def action_os_getVNCConsole(self, request, instance, args):  # noqa: N802
        if request.api_version >= "2.6":
            raise BadRequest("There is no such action: os-getVNCConsole (use remote-consoles since 2.6)")
        if not isinstance(args, dict) or args.get("type") != "novnc":
            raise BadRequest("Invalid console type: only 'novnc' is available.")
        url = console_services.console_create(ctx=self.ctx, instance=instance, console_type="novnc")
        return Response({"console": {"type": "novnc", "url": url}})

    # --- pause, suspend, lock, reset -------------------------------------------------------------------

    def action_pause(self, request, instance, args):
        return self._simple(instance, "pause")

    def action_unpause(self, request, instance, args):
        return self._simple(instance, "unpause")

    def action_suspend(self, request, instance, args):
        return self._simple(instance, "suspend")

    def action_resume(self, request, instance, args):
        return self._simple(instance, "resume")

    def action_lock(self, request, instance, args):
        reason = None
        if request.api_version >= "2.73":
            reason = _args(LockSerializer, args, request, required=False).get("locked_reason")
        action_services.instance_lock(ctx=self.ctx, instance=instance, reason=reason)
        return Response(status=202)

    def action_unlock(self, request, instance, args):
        action_services.instance_unlock(ctx=self.ctx, instance=instance)
        return Response(status=202)

    def action_os_resetState(self, request, instance, args):  # noqa: N802
        state = _args(ResetStateSerializer, args, request)["state"]
        action_services.instance_reset_state(ctx=self.ctx, instance=instance, state=state)
        return Response(status=202)

    # --- rebuild and snapshot ---------------------------------------------------------------------------

    def action_rebuild(self, request, instance, args):
        data = _args(RebuildSerializer, args, request)
        image = image_get(ctx=self.ctx, image_id=data["imageRef"])
        if image is None:
            raise BadRequest(f"Cannot find image {data['imageRef'][:64]} for rebuild")
        changes = {}
        if "description" in data:
            changes["description"] = data["description"]
        if "user_data" in data:
            changes["user_data"] = data["user_data"]
        if "key_name" in data:
            keypair = None
            if data["key_name"] is not None:
                keypair = keypair_get(self.ctx.user, data["key_name"])
                if keypair is None:
                    raise BadRequest("Invalid key_name provided.")
            changes["keypair"] = keypair
        metadata = data.get("metadata")
        action_services.instance_rebuild(
            ctx=self.ctx, instance=instance, image=image, name=data.get("name"), metadata=metadata, **changes
        )
        fresh = get_instance_or_404(self, instance.uuid)
        response = Response({"server": server_brief(fresh, request, self.ctx, rebuild=True)}, status=202)
        response["Location"] = links("servers", fresh.uuid)[0]["href"]
        return response

    def action_createImage(self, request, instance, args):  # noqa: N802
        data = _args(CreateImageSerializer, args, request)
        try:
            image = action_services.instance_snapshot(
                ctx=self.ctx, instance=instance, name=data["name"], metadata=data.get("metadata")
            )
        except (ImageForbidden, ImageQuotaExceeded) as exc:  # the compute API's quota refusals are 403
            raise Forbidden(str(exc)) from None
        except ImageTooLarge as exc:
            raise BadRequest(str(exc)) from None
        except ImageError as exc:
            raise BadRequest(str(exc)) from None
        if request.api_version >= "2.45":
            return Response({"image_id": str(image.id)}, status=202)
        response = Response(status=202)
        response["Location"] = f"{settings.CLOUD['PUBLIC_URL']}/image/v2/images/{image.id}"
        return response

    # --- moves ------------------------------------------------------------------------------------------

    def action_resize(self, request, instance, args):
        data = _args(ResizeSerializer, args, request)
        flavor = flavor_get(self.ctx, data["flavorRef"])
        if flavor is None:
            raise BadRequest(f"Unable to find flavor {data['flavorRef'][:64]}")
        move_services.instance_resize(ctx=self.ctx, instance=instance, flavor=flavor)
        return Response(status=202)

    def action_migrate(self, request, instance, args):
        host = ""
        if args is not None:
            data = _args(MigrateSerializer, args, request, required=False)
            if data.get("host") and request.api_version < "2.56":
                raise BadRequest("Additional properties are not allowed ('host' was unexpected)")
            host = data.get("host") or ""
        try:
            move_services.instance_migrate(ctx=self.ctx, instance=instance, host=host)
        except LookupError as exc:  # an unknown host is a bad argument, as Nova has it, not a missing server
            raise BadRequest(str(exc)) from None
        return Response(status=202)

    def action_confirmResize(self, request, instance, args):  # noqa: N802
        move_services.instance_confirm_resize(ctx=self.ctx, instance=instance)
        return Response(status=204)

    def action_revertResize(self, request, instance, args):  # noqa: N802
        move_services.instance_revert_resize(ctx=self.ctx, instance=instance)
        return Response(status=202)

    def action_shelve(self, request, instance, args):
        try:
            shelving.instance_shelve(ctx=self.ctx, instance=instance)
        except (ImageForbidden, ImageQuotaExceeded) as exc:
            raise Forbidden(str(exc)) from None
        return Response(status=202)

    def action_shelveOffload(self, request, instance, args):  # noqa: N802
        shelving.instance_shelve_offload(ctx=self.ctx, instance=instance)
        return Response(status=202)

    def action_unshelve(self, request, instance, args):
        # An offloaded server may be unshelved into another availability zone from 2.77.
        zone = None
        if args is not None and request.api_version >= "2.77":
            if not isinstance(args, dict) or set(args) != {"availability_zone"}:
                raise BadRequest(
                    "Invalid input for field/attribute unshelve. Value: must be null or {'availability_zone': <name>}."
                )
            zone = args["availability_zone"]
            if not isinstance(zone, str) or not zone.strip() or len(zone) > 255:
                raise BadRequest("Invalid input for field/attribute availability_zone: must be a zone's name.")
            if zone != default_zone() and zone not in available_zone_names():
                raise BadRequest(f"The requested availability zone is not available: {zone[:64]}")
        elif args not in (None, {}):
            raise BadRequest("Invalid input for field/attribute unshelve. Value: must be null.")
        shelving.instance_unshelve(ctx=self.ctx, instance=instance, availability_zone=zone)
        return Response(status=202)

    def action_rescue(self, request, instance, args):
        data = _args(RescueSerializer, args, request, required=False)
        image = None
        if data.get("rescue_image_ref"):
            image = image_get(ctx=self.ctx, image_id=data["rescue_image_ref"])
            if image is None:
                raise BadRequest(f"Image {data['rescue_image_ref'][:64]} could not be found.")
        action_services.instance_rescue(ctx=self.ctx, instance=instance, rescue_image=image)
        # As Nova with ``enable_instance_password``: the password is returned, and only a guest agent
        # could set it (this cloud injects none, like Nova's libvirt driver without file injection).
        return Response({"adminPass": data.get("adminPass") or secrets.token_urlsafe(9)})

    def action_unrescue(self, request, instance, args):
        action_services.instance_unrescue(ctx=self.ctx, instance=instance)
        return Response(status=202)

    def action_os_migrateLive(self, request, instance, args):  # noqa: N802
        data = _args(LiveMigrateSerializer, args, request)
        block = data["block_migration"]
        if block == "auto" and request.api_version >= "2.25":
            block = None
        elif isinstance(block, str) and block.lower() in ("true", "false"):
            block = block.lower() == "true"
        if block is not None and not isinstance(block, bool):
            raise BadRequest("Invalid input for field/attribute block_migration: must be a boolean or 'auto' (2.25).")
        if "force" in data and not "2.30" <= request.api_version <= "2.67":
            raise BadRequest("Additional properties are not allowed ('force' was unexpected)")
        try:
            live_migrations.instance_live_migrate(
                ctx=self.ctx, instance=instance, host=data.get("host") or "", block_migration=block
            )
        except LookupError as exc:
            raise BadRequest(str(exc)) from None
        return Response(status=202)

    def action_evacuate(self, request, instance, args):
        data = _args(EvacuateSerializer, args, request)
        if "onSharedStorage" in data and request.api_version >= "2.14":
            raise BadRequest("Additional properties are not allowed ('onSharedStorage' was unexpected)")
        try:
            password = live_migrations.instance_evacuate(ctx=self.ctx, instance=instance, host=data.get("host") or "")
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        if request.api_version >= "2.14":
            return Response(status=200)
        return Response({"adminPass": data.get("adminPass") or password})

    # --- security groups ---------------------------------------------------------------------------------

    def _security_group(self, instance, args, change):
        if not isinstance(args, dict) or not isinstance(args.get("name"), str) or not args["name"].strip():
            raise BadRequest("Security group name cannot be empty")
        try:
            change(ctx=self.ctx, instance=instance, name=args["name"].strip())
        except instance_ports.SecurityGroupRequestError as exc:
            raise (NotFound if exc.status == 404 else BadRequest)(str(exc)) from None
        except NetworkError as exc:
            raise BadRequest(exc.message) from None
        return Response(status=202)

    def action_addSecurityGroup(self, request, instance, args):  # noqa: N802
        return self._security_group(instance, args, instance_ports.server_security_group_add)

    def action_removeSecurityGroup(self, request, instance, args):  # noqa: N802
        return self._security_group(instance, args, instance_ports.server_security_group_remove)

    # --- console log ------------------------------------------------------------------------------------

    def action_os_getConsoleOutput(self, request, instance, args):  # noqa: N802
        length = _args(ConsoleOutputSerializer, args, request, required=False).get("length")
        try:
            output = console_output.instance_console_output(ctx=self.ctx, instance=instance, length=length)
        except console_output.ConsoleUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None
        except console_output.NoConsole as exc:
            raise NotFound(str(exc)) from None
        return Response({"output": output})


_ACTIONS = {
    "os-start",
    "os-stop",
    "reboot",
    "os-getVNCConsole",
    "pause",
    "unpause",
    "suspend",
    "resume",
    "lock",
    "unlock",
    "os-resetState",
    "rebuild",
    "createImage",
    "os-getConsoleOutput",
    "resize",
    "migrate",
    "confirmResize",
    "revertResize",
    "shelve",
    "shelveOffload",
    "unshelve",
    "rescue",
    "unrescue",
    "os-migrateLive",
    "evacuate",
    "addSecurityGroup",
    "removeSecurityGroup",
}


class RemoteConsoleView(ComputeAPIView):
    def post(self, request, server_id):
        if request.api_version < "2.6":
            raise NotFound()
        self.require_write()  # a console is the server's keyboard: readers may not open one
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("remote_console"), dict):
            raise BadRequest("The request body must be an object with a 'remote_console' object.")
        serializer = RemoteConsoleSerializer(data=body["remote_console"])
        serializer.is_valid(raise_exception=True)
        protocol, kind = serializer.validated_data["protocol"], serializer.validated_data["type"]
        if (protocol, kind) != ("vnc", "novnc"):
            raise BadRequest(f"Unavailable console type {kind} for protocol {protocol}: only vnc/novnc is available.")
        instance = get_instance_or_404(self, server_id)
        try:
            url = console_services.console_create(ctx=self.ctx, instance=instance, console_type=kind)
        except console_services.ConsoleForbidden as exc:
            raise Forbidden(str(exc)) from None
        except StateConflict as exc:
            raise Conflict(str(exc)) from None
        return Response({"remote_console": {"protocol": protocol, "type": kind, "url": url}})
