"""Images the tests put in the image service."""

from __future__ import annotations

from pathlib import Path

from portal.services.images import image_create, image_upload


def public_image(*, project, path: Path, name: str):
    """A public qcow2 image with the file at ``path``, registered as an operator would (no user context:
    only admins make images public) and owned by ``project``."""
    image = image_create(
        ctx=None,
        owner_id=project.pk,
        name=name,
        disk_format="qcow2",
        container_format="bare",
        visibility="public",
    )
    with Path(path).open("rb") as stream:
        image_upload(image=image, stream=stream)
    image.refresh_from_db()
    return image
