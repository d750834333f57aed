"""The base of the networking API's collections and members: list queries, show, create (one or several)
and the project a new resource belongs to."""

from __future__ import annotations

from django.db import transaction
from rest_framework import status as http
from rest_framework.response import Response

from portal.services.network_errors import BadRequest
from portal.services.projects import project_by_id

from .base import NetworkingAPIView
from .query import apply_filters, apply_sort, paginate, select_fields

MAX_BULK = 100


def unrecognized(attrs: dict, allowed: set[str]) -> None:
    unknown = sorted(k for k in attrs if k not in allowed)
    if unknown:
        raise BadRequest(f"Unrecognized attribute(s) '{', '.join(u[:64] for u in unknown)}'")


def only_empty(attrs: dict, names: tuple[str, ...]) -> None:
    """Attributes the API knows but this cloud does not implement: accepted only with their empty value."""
    for name in names:
        value = attrs.pop(name, None)
        if value not in (None, [], {}, "", "normal", False):
            raise BadRequest(f"Invalid input for {name}: this cloud does not support setting it.")


class ResourceView(NetworkingAPIView):
    """A collection (``member`` = None) or one member of networks, subnets or ports."""

    collection = ""
    member = ""
    attrs: dict = {}
    special_filters: dict = {}

    def visible(self):
        raise NotImplementedError

    def body(self, row) -> dict:
        raise NotImplementedError

    def prefetch(self, rows: list) -> None:
        """Read at once what ``body`` needs of every row beyond what ``visible`` fetches (none here)."""

    def list_response(self, request) -> Response:
        params = request.query_params
        rows = apply_filters(self.visible(), params, self.attrs, is_admin=self.is_admin, special=self.special_filters)
        rows = apply_sort(rows, params, self.attrs, is_admin=self.is_admin)
        page, links = paginate(rows, params, self.collection_url(self.collection), self.collection)
        self.prefetch(page)
        body = {self.collection: [select_fields(self.body(row), params) for row in page]}
        if links:
            body[f"{self.collection}_links"] = links
        return Response(body)

    def show_response(self, row, status=http.HTTP_200_OK) -> Response:
        fresh = self.visible().get(pk=row.pk)
        self.prefetch([fresh])
        return Response({self.member: select_fields(self.body(fresh), self.request.query_params)}, status=status)

    def create_response(self, request, create_one) -> Response:
        """One member under ``<member>``, or several under ``<collection>`` (all or none)."""
        self.require_write()
        data = request.data
        if isinstance(data, dict) and isinstance(data.get(self.collection), list):
            items = data[self.collection]
            if not items or len(items) > MAX_BULK or not all(isinstance(i, dict) for i in items):
                raise BadRequest(f"Bulk create takes 1 to {MAX_BULK} objects under '{self.collection}'.")
            with transaction.atomic():
                rows = [create_one(dict(item)) for item in items]
            fresh = [self.visible().get(pk=row.pk) for row in rows]
            self.prefetch(fresh)
            bodies = [self.body(row) for row in fresh]
            return Response({self.collection: bodies}, status=http.HTTP_201_CREATED)
        row = create_one(dict(self.body_of(self.member)))
        return self.show_response(row, status=http.HTTP_201_CREATED)

    def target_project(self, attrs: dict):
        """The project a new resource belongs to: the caller's, or (admins only) the one the body names."""
        named = {attrs.pop(k) for k in ("project_id", "tenant_id") if k in attrs}
        if len(named) > 1:
            raise BadRequest("'project_id' and 'tenant_id' do not match")
        if not named or named == {self.ctx.project.pk}:
            return self.ctx.project
        if not self.is_admin:
            raise BadRequest(
                "Specifying 'project_id' or 'tenant_id' other than the authenticated project in request requires "
                "admin privileges"
            )
        project_id = named.pop()
        project = project_by_id(project_id) if isinstance(project_id, str) else None
        if project is None:
            raise BadRequest(f"Project {str(project_id)[:64]} is not a project of this cloud.")
        return project
