from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Compute cloud"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Every control-plane process (API, conductor, beat) signs what it sends to hosts with the control
        # plane's key, and believes hosts by the keys they were enrolled with.
        from compute_tasks import rpc
        from portal.services import host_trust

        rpc.use_signer(host_trust.control_plane_signer)
        rpc.use_verifier(host_trust.public_key_of)

        # What this process keeps of identities (a caller's user, project and role, for a few seconds) is
        # read again at once after any change to a user, project or membership, however it was made: by
        # a service, the admin's forms or `manage.py changepassword`.
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from portal.models import Membership, Project
        from portal.services.identity_tokens import forget_identities

        for model in (get_user_model(), Membership, Project):
            post_save.connect(forget_identities, sender=model, dispatch_uid=f"forget-identities-{model.__name__}")
            post_delete.connect(forget_identities, sender=model, dispatch_uid=f"forget-identities-del-{model.__name__}")
