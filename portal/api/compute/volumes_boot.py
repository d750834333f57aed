"""``/os-volumes_boot``: the servers API under its old name (list, create, detail, show, update, delete),
until 2.102; from 2.103 it is gone (404), as in the compute API."""

from __future__ import annotations

from portal.api.errors import NotFound

from . import servers

_LAST_VERSION = "2.102"


class _UntilRemoved:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.api_version > _LAST_VERSION:
            raise NotFound("The resource could not be found.")


class VolumesBootListView(_UntilRemoved, servers.ServerListView):
    pass


class VolumesBootDetailListView(_UntilRemoved, servers.ServerDetailListView):
    pass


class VolumesBootView(_UntilRemoved, servers.ServerView):
    pass
