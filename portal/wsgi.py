"""The API's WSGI application (``gunicorn portal.wsgi:application``).

Everything a request needs is imported here, once, and then moved out of the garbage collector's sight
(``gc.freeze``): Django's, DRF's and the project's long-lived objects are never garbage, but every full
collection would walk all of them again, and a page of a thousand servers allocates enough objects to set
one off every few requests.
"""

import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings.base")
application = get_wsgi_application()
get_resolver().url_patterns  # noqa: B018 - imports every view now rather than on the first request
gc.collect()
gc.freeze()
