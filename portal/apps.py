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
