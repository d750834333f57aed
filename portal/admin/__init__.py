"""The operators' admin: one module per concern, every write through the services the API uses."""

from django.contrib import admin

from portal.auth.forms import AdminSignInForm

from . import (  # noqa: F401 - registers
    aggregates,
    consoles,
    flavors,
    host_trust,
    hosts,
    identity,
    images,
    instances,
    networks,
    quotas,
    routers,
)

# The admin's sign-in page checks passwords too: behind the same throttle as every other.
admin.site.login_form = AdminSignInForm
