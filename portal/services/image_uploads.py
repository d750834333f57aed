"""Signed upload URLs: how a compute host, which holds no credentials, puts a snapshot into the image API.

The URL names one image and is signed for it; it expires with the snapshot's lease, and it works only
while the image waits for its data (``queued``), so it can fill that image once and nothing else.
"""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing

from portal.models import Image

from .images import DownloadDenied, ImageNotFound

_UPLOAD_SALT = "portal.images.snapshot-upload"


def upload_url_ttl() -> int:
    return settings.CLOUD["TASK_LEASES"].get("image_snapshot", 1800)


def snapshot_upload_url(*, image: Image) -> str:
    token = signing.dumps({"id": str(image.id), "purpose": "snapshot"}, salt=_UPLOAD_SALT)
    return f"{settings.CLOUD['PUBLIC_URL']}/internal/images/{image.id}/upload?{urlencode({'sig': token})}"


def image_for_snapshot_upload(*, image_id: uuid.UUID | str, signature: str) -> Image:
    """The image a signed upload URL grants, or DownloadDenied (bad or expired) / ImageNotFound."""
    try:
        claims = signing.loads(signature, salt=_UPLOAD_SALT, max_age=upload_url_ttl())
    except signing.SignatureExpired:
        raise DownloadDenied("The upload URL has expired.") from None
    except signing.BadSignature:
        raise DownloadDenied("The upload URL's signature is not valid.") from None
    if not isinstance(claims, dict) or claims.get("id") != str(image_id) or claims.get("purpose") != "snapshot":
        raise DownloadDenied("The upload URL's signature is not valid for this image.")
    image = Image.objects.filter(pk=image_id).exclude(status=Image.Status.DELETED).first()
    if image is None:
        raise ImageNotFound(f"No image found with ID {image_id}")
    return image
