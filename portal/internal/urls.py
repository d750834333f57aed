from django.urls import path

from . import console_sessions, consoleauth, image_uploads, images, metadata

urlpatterns = [
    path("images/<uuid:image_id>/file", images.image_file, name="internal-image-file"),
    path("images/<uuid:image_id>/upload", image_uploads.snapshot_upload, name="internal-image-upload"),
    # Before the token route, which would take "sessions" for a token.
    path("consoleauth/sessions", console_sessions.session_open, name="internal-console-session-open"),
    path(
        "consoleauth/sessions/<int:session_id>/check",
        console_sessions.session_check,
        name="internal-console-session-check",
    ),
    path(
        "consoleauth/sessions/<int:session_id>/close",
        console_sessions.session_close,
        name="internal-console-session-close",
    ),
    path("consoleauth/<str:token>", consoleauth.consoleauth, name="internal-consoleauth"),
    path("metadata/", metadata.metadata, name="internal-metadata-root"),
    path("metadata/<path:path>", metadata.metadata, name="internal-metadata"),
]
