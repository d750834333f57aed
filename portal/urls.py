from django.contrib import admin
from django.urls import include, path

from portal.api.identity.auth_views import VersionsView as IdentityVersionsView
from portal.api.image.views import VersionsView as ImageVersionsView
from portal.api.network.views import VersionsView as NetworkingVersionsView
from portal.metrics.views import MetricsView

urlpatterns = [
    path("compute/", include("portal.api.compute.urls")),
    # The catalog's image endpoint is <public URL>/image, without a slash; clients discover versions there.
    path("image", ImageVersionsView.as_view(), name="image-versions-root"),
    path("image/", include("portal.api.image.urls")),
    # The networking API v2.0; the catalog's network endpoint is <public URL>/networking, without a slash.
    path("networking", NetworkingVersionsView.as_view(), name="networking-versions-root"),
    path("networking/", include("portal.api.network.urls")),
    # The built-in identity API v3 (OS_AUTH_URL=<public URL>/identity/v3); versions at /identity.
    path("identity", IdentityVersionsView.as_view(), name="identity-versions-root"),
    path("identity/", include("portal.api.identity.urls")),
    path("internal/", include("portal.internal.urls")),
    # Prometheus scrapes here (docs/observability.md): a bearer token or an admin's credentials.
    path("metrics", MetricsView.as_view(), name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("portal.web.urls")),
]

handler404 = "portal.api.fallback.not_found"
handler500 = "portal.api.fallback.server_error"
