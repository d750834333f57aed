"""``POST /servers/{id}/action`` and ``POST /servers/{id}/remote-consoles``."""

from __future__ import annotations

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
from portal.services import floating_ips as floating_ip_services
from portal.services import instances as instance_services
from portal.services import moves as move_services
from portal.services.images import ImageForbidden, ImageQuotaExceeded
from portal.services.lifecycle import StateConflict
from portal.services.network_errors import NetworkError
from portal.services.quotas import QuotaExceeded

from . import validation
from .image_actions import ImageActionsMixin
from .links import links
from .serializers import (
    ConsoleOutputSerializer,
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


_args = validation.action_args


def _single_action(body) -> tuple[str, object]:
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("The request body must be an object with exactly one action.")
    return next(iter(body.items()))


class ServerActionView(ImageActionsMixin, ComputeAPIView):
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

    def action_injectNetworkInfo(self, request, instance, args):  # noqa: N802
        """Admins: 202 and nothing else, as with Nova's libvirt driver: guests take their addresses by DHCP
        and from the config drive, so there is nothing to inject."""
        self.require_admin()
        return Response(status=202)

    def action_restore(self, request, instance, args):
        # Deletion here is never deferred (Nova's reclaim_instance_interval 0): no server is SOFT_DELETED.
        raise Conflict(f"Cannot 'restore' instance {instance.uuid} while it is in vm_state {instance.vm_state}")

    def action_forceDelete(self, request, instance, args):  # noqa: N802
        raise Conflict(f"Cannot 'forceDelete' instance {instance.uuid} while it is in vm_state {instance.vm_state}")

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
        if "personality" in data:
            changes["personality"] = data["personality"]
        if "hostname" in data:
            changes["hostname"] = data["hostname"]
        for field, argument in (("accessIPv4", "access_ip_v4"), ("accessIPv6", "access_ip_v6")):
            if field in data:
                changes[argument] = data[field]
        if "key_name" in data:
            keypair = None
            if data["key_name"] is not None:
                keypair = keypair_get(self.ctx.user, data["key_name"])
                if keypair is None:
                    raise BadRequest("Invalid key_name provided.")
            changes["keypair"] = keypair
        metadata = data.get("metadata")
        action_services.instance_rebuild(
            ctx=self.ctx,
            instance=instance,
            image=image,
            name=data.get("name"),
            metadata=metadata,
            reimage_volume=request.api_version >= "2.93",  # a volume-backed server's root volume from 2.93
            **changes,
        )
        fresh = get_instance_or_404(self, instance.uuid)
        response = Response({"server": server_brief(fresh, request, self.ctx, rebuild=True)}, status=202)
        response["Location"] = links("servers", fresh.uuid)[0]["href"]
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
        # An offloaded server may be unshelved into another availability zone from 2.77; from 2.91 the zone
        # may be null (unpinned) and an admin may name the host.
        kwargs = {}
        version = request.api_version
        if version >= "2.91" and args is not None:
            if not isinstance(args, dict) or not set(args) <= {"availability_zone", "host"}:
                raise BadRequest(
                    "Invalid input for field/attribute unshelve. Value: must be null or an object with "
                    "'availability_zone' and 'host'."
                )
            if "availability_zone" in args:
                kwargs["availability_zone"] = self._unshelve_zone(args["availability_zone"], nullable=True)
            if "host" in args:
                host = args["host"]
                if not isinstance(host, str) or not host or len(host) > 255:
                    raise BadRequest("Invalid input for field/attribute host: must be a host name.")
                kwargs["host"] = host
        elif args is not None and version >= "2.77":
            if not isinstance(args, dict) or set(args) != {"availability_zone"}:
                raise BadRequest(
                    "Invalid input for field/attribute unshelve. Value: must be null or {'availability_zone': <name>}."
                )
            kwargs["availability_zone"] = self._unshelve_zone(args["availability_zone"], nullable=False)
        elif args not in (None, {}):
            raise BadRequest("Invalid input for field/attribute unshelve. Value: must be null.")
        try:
            shelving.instance_unshelve(ctx=self.ctx, instance=instance, **kwargs)
        except LookupError as exc:
            raise BadRequest(str(exc)) from None
        return Response(status=202)

    @staticmethod
    def _unshelve_zone(zone, *, nullable: bool) -> str | None:
        if zone is None and nullable:
            return None
        if not isinstance(zone, str) or not zone.strip() or len(zone) > 255:
            raise BadRequest("Invalid input for field/attribute availability_zone: must be a zone's name.")
        if zone != default_zone() and zone not in available_zone_names():
            raise BadRequest(f"The requested availability zone is not available: {zone[:64]}")
        return zone

    def action_rescue(self, request, instance, args):
        data = _args(RescueSerializer, args, request, required=False)
        image = None
        if data.get("rescue_image_ref"):
            image = image_get(ctx=self.ctx, image_id=data["rescue_image_ref"])
            if image is None:
                raise BadRequest(f"Image {data['rescue_image_ref'][:64]} could not be found.")
        action_services.instance_rescue(
            ctx=self.ctx, instance=instance, rescue_image=image, allow_volume_backed=request.api_version >= "2.87"
        )
        # As Nova with ``enable_instance_password = False``, as on create: no password is returned, since
        # nothing would set it (no guest agent, no file injection).
        return Response({})

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
            live_migrations.instance_evacuate(
                ctx=self.ctx,
                instance=instance,
                host=data.get("host") or "",
                stopped=request.api_version >= "2.95",  # from 2.95 an evacuated server comes back stopped
            )
        except LookupError as exc:
            raise NotFound(str(exc)) from None
        # No password at any version, as on create and rescue (Nova with enable_instance_password = False).
        return Response(status=200)

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

    # --- floating IPs (until 2.44: Nova's proxy of the networking API) ------------------------------------

    def _floating_ip(self, request, instance, args, change, *, conflict=Conflict, **extra):
        if request.api_version >= "2.44":
            raise NotFound("The floating IP actions were removed in 2.44: use the networking API.")
        if not isinstance(args, dict) or not isinstance(args.get("address"), str):
            raise BadRequest("Invalid input for field/attribute address: a floating IP address is required.")
        try:
            change(
                project=self.ctx.project,
                user_is_admin=self.ctx.is_admin,
                instance=instance,
                address=args["address"],
                **extra,
            )
        except NetworkError as exc:
            raise {404: NotFound, 409: conflict}.get(exc.status, BadRequest)(exc.message) from None
        return Response(status=202)

    def action_addFloatingIp(self, request, instance, args):  # noqa: N802
        # Nova's proxy answers every association the networking API refuses (a fixed address that
        # already has a floating IP among them) with 400.
        fixed = args.get("fixed_address") if isinstance(args, dict) else None
        return self._floating_ip(
            request,
            instance,
            args,
            floating_ip_services.server_floating_ip_add,
            conflict=BadRequest,
            fixed_address=fixed,
        )

    def action_removeFloatingIp(self, request, instance, args):  # noqa: N802
        return self._floating_ip(request, instance, args, floating_ip_services.server_floating_ip_remove)

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
    "injectNetworkInfo",
    "restore",
    "forceDelete",
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
    "createBackup",
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
    "addFloatingIp",
    "removeFloatingIp",
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
        if kind == "spice-direct" and request.api_version < "2.99":
            raise BadRequest("Invalid input for field/attribute type: 'spice-direct' is not allowed before 2.99.")
        # The hosts offer VNC only: any other console is unavailable, as in Nova with it disabled.
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
