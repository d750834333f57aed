"""The image API, mounted at ``/image/``: version discovery, then ``/image/v2/...`` as Glance serves it."""

from django.urls import path, re_path

from . import views

urlpatterns = [
    path("", views.VersionsView.as_view(), name="image-versions"),
    path("versions", views.VersionsView.as_view(multiple_choices=False), name="image-versions-explicit"),
    path("v2/", views.VersionsView.as_view(multiple_choices=False)),
    path("v2/images", views.ImagesView.as_view(), name="image-list"),
    path("v2/images/<str:image_id>", views.ImageDetailView.as_view(), name="image-detail"),
    path("v2/images/<str:image_id>/file", views.ImageFileView.as_view(), name="image-file"),
    path("v2/images/<str:image_id>/tags/<str:tag>", views.ImageTagView.as_view(), name="image-tag"),
    path("v2/images/<str:image_id>/tasks", views.ImageTasksView.as_view(), name="image-tasks"),
    re_path(
        r"^v2/images/[^/]+/(?:members|actions|import|stage|tasks/.+)(?:/.*)?$",
        views.NotImplementedView.as_view(),
    ),
    path("v2/schemas/image", views.ImageSchemaView.as_view(), name="image-schema"),
    path("v2/schemas/images", views.ImagesSchemaView.as_view(), name="images-schema"),
    path("v2/info/import", views.ImportInfoView.as_view(), name="image-import-info"),
]
