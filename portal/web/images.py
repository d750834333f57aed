"""Images: the ones the project may use, and uploading a new one through the image service."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods

from portal.models import Image
from portal.selectors.images import images_visible_to
from portal.services.images import ImageError, image_create, image_data_room, image_delete, image_upload

from .context import page, portal_view
from .forms import ImageUploadForm
from .uploads import UploadSizeLimit, body_exceeds


@require_GET
@portal_view
def image_list(request: HttpRequest) -> HttpResponse:
    ctx = request.ctx
    images = (
        images_visible_to(ctx=ctx)
        .filter(Q(visibility=Image.Visibility.PUBLIC) | Q(owner_id=ctx.project.pk))
        .order_by("name", "created_at")
    )
    return page(request, "portal/images.html", {"section": "images", "images": images})


@csrf_exempt  # the upload handlers must be in place before anything reads the body; CSRF is checked below
@require_http_methods(["GET", "POST"])
@portal_view
def image_upload_page(request: HttpRequest) -> HttpResponse:
    """Uploads are bounded while they stream in, by ``MAX_IMAGE_SIZE`` and the project's image size quota:
    a body announced larger is refused unread, and reading stops as soon as the file goes over."""
    refusal = size_guard = None
    if request.method == "POST":
        limit, refusal = image_data_room(project=request.ctx.project)
        if body_exceeds(request, limit):
            return _too_large(request, ImageUploadForm(ctx=request.ctx), refusal)  # unbound: the body stays unread
        size_guard = UploadSizeLimit(request, limit=limit)
        request.upload_handlers.insert(0, size_guard)
    return _image_upload_form(request, size_guard, refusal)


@csrf_protect
def _image_upload_form(request: HttpRequest, size_guard: UploadSizeLimit | None, refusal) -> HttpResponse:
    ctx = request.ctx
    status = 200
    if request.method == "POST":
        form = ImageUploadForm(request.POST, request.FILES, ctx=ctx)
        if size_guard.exceeded:
            return _too_large(request, form, refusal)
        if form.is_valid():
            data = form.cleaned_data
            image = None
            try:
                image = image_create(
                    ctx=ctx,
                    name=data["name"],
                    disk_format=data["disk_format"],
                    container_format=data["container_format"],
                    visibility=data["visibility"],
                    min_disk=data["min_disk"],
                    min_ram=data["min_ram"],
                )
                with data["file"].open("rb") as stream:
                    image_upload(image=image, stream=stream, ctx=ctx, expected_size=data["file"].size)
            except ImageError as exc:
                if image is not None:
                    image_delete(ctx=ctx, image=image)  # no queued image without data is left behind
                form.add_error("file" if image is not None else None, str(exc))
            else:
                messages.success(request, f"Image {image.name} uploaded ({image.size} bytes).")
                return HttpResponseRedirect(reverse("portal:images"))
        status = 400
    else:
        form = ImageUploadForm(ctx=ctx)
    return page(request, "portal/image_upload.html", {"section": "images", "form": form}, status=status)


def _too_large(request: HttpRequest, form: ImageUploadForm, refusal: ImageError) -> HttpResponse:
    """The form again with the refusal as the file's only error (the file itself never arrived)."""
    form.errors["file"] = form.error_class([str(refusal)])
    return page(request, "portal/image_upload.html", {"section": "images", "form": form}, status=413)
