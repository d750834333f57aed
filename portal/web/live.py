"""Live pages: server-sent events that carry each instance change as freshly rendered HTML.

A stream polls one cheap "changed since" query a second (the instances whose ``updated_at`` moved, and
for a detail page the newest action of the instance) and sends what changed. Every write to an
instance's state goes through the lifecycle writer, which moves ``updated_at``, so nothing is missed.

Streams are short (``PORTAL['LIVE_STREAM_SECONDS']``) and the browser reconnects by itself, resuming
from the last event id, so a page never holds a worker thread for long. Each process serves at most
``PORTAL['LIVE_MAX_STREAMS']`` at once: past that a page gets what changed and is told to come back
in a few seconds, which keeps threads free for the API under gunicorn's threaded workers.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from portal.models import FloatingIP, InstanceAction, Port
from portal.selectors.instances import instance_get, instances_visible, with_latest_faults
from portal.states import VmState

from .context import portal_view
from .detail import detail_context
from .presenters import present, render_rows

# A write's updated_at is taken before its transaction commits; looking back a little catches rows that
# committed after a poll had already passed their time. Rows already sent are not sent twice.
_OVERLAP = timedelta(seconds=5)
_KEEPALIVE_SECONDS = 5.0
_RETRY_MS = 1000
_BUSY_RETRY_MS = 5000

_slots_lock = threading.Lock()
_open_streams = 0


def _take_slot() -> bool:
    global _open_streams
    with _slots_lock:
        if _open_streams >= settings.PORTAL["LIVE_MAX_STREAMS"]:
            return False
        _open_streams += 1
        return True


def _give_slot() -> None:
    global _open_streams
    with _slots_lock:
        _open_streams -= 1


def open_streams() -> int:
    return _open_streams


def _since(request: HttpRequest) -> datetime:
    """Where to resume: the last event id the browser saw, else the time the page was rendered."""
    for value in (request.headers.get("Last-Event-ID"), request.GET.get("since")):
        moment = parse_datetime(value) if value else None
        if moment is not None and timezone.is_aware(moment):
            return moment
    return timezone.now()


def _event(name: str, data: dict, event_id: str | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def _stream(request: HttpRequest, changes) -> StreamingHttpResponse:
    """An event stream of ``changes(since)``: it yields (moment, signature, key, payload) per change."""
    since = _since(request)

    def events() -> Iterator[str]:
        streaming = _take_slot()
        try:
            yield f"retry: {_RETRY_MS if streaming else _BUSY_RETRY_MS}\n\n"
            sent: dict[str, object] = {}
            newest = since
            deadline = time.monotonic() + (settings.PORTAL["LIVE_STREAM_SECONDS"] if streaming else 0)
            quiet_since = time.monotonic()
            while True:
                for moment, signature, key, payload in changes(newest - _OVERLAP):
                    newest = max(newest, moment)
                    if sent.get(key) == signature:
                        continue
                    sent[key] = signature
                    quiet_since = time.monotonic()
                    yield _event("instance", payload, newest.isoformat())
                if time.monotonic() >= deadline:
                    break
                if time.monotonic() - quiet_since >= _KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keep-alive\n\n"  # also how a closed connection is noticed
                time.sleep(settings.PORTAL["LIVE_POLL_INTERVAL"])
        finally:
            if streaming:
                _give_slot()

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache, no-store"
    response["X-Accel-Buffering"] = "no"  # a buffering reverse proxy would hold the events back
    return response


@require_GET
@portal_view
def instance_list_events(request: HttpRequest) -> StreamingHttpResponse:
    """Changes to the project's instances, each with its list row rendered."""
    ctx = request.ctx

    def changes(since: datetime):
        rows = instances_visible(ctx, include_deleted=True).filter(updated_at__gt=since).order_by("updated_at")
        for instance in with_latest_faults(rows):
            key = str(instance.uuid)
            if instance.vm_state == VmState.DELETED:
                payload = {"uuid": key, "deleted": True}
            else:
                view = present(instance, ctx)
                html = render_rows(request, [view])
                payload = {"uuid": key, "status": view.status, "task_state": view.task_state, "html": html}
            yield instance.updated_at, instance.updated_at, key, payload

    return _stream(request, changes)


@require_GET
@portal_view
def instance_detail_events(request: HttpRequest, server_id) -> StreamingHttpResponse:
    """Changes to one instance, its action log, its ports (an interface turning ACTIVE when its host has
    plugged it) or the floating IPs that stand for them, with the live part of its page rendered."""
    ctx = request.ctx
    if instance_get(ctx, server_id) is None:
        raise Http404("No such instance")
    floating_seen: set | None = None

    def changes(since: datetime):
        nonlocal floating_seen
        instance = instance_get(ctx, server_id) or _deleted(ctx, server_id)
        if instance is None:
            return
        last_action = InstanceAction.objects.filter(instance=instance).aggregate(newest=Max("updated_at"))["newest"]
        last_port = Port.objects.filter(device_id=str(instance.uuid)).aggregate(newest=Max("updated_at"))["newest"]
        moment = max(instance.updated_at, last_action or instance.updated_at, last_port or instance.updated_at)
        # A floating IP that leaves the instance's ports no longer points at them: the set is compared
        # with the last one seen, not a time.
        floating = set(FloatingIP.objects.filter(port__device_id=str(instance.uuid)).values_list("pk", "updated_at"))
        floating_moved = floating_seen is not None and floating != floating_seen
        floating_seen = floating
        moment = max([moment, *(updated for _, updated in floating)])
        if floating_moved:
            moment = max(moment, timezone.now())
        if moment <= since:
            return
        context = detail_context(instance, ctx)
        html = render_to_string("portal/_instance_live.html", context, request=request)
        status = context["view"].status
        payload = {"uuid": str(instance.uuid), "status": status, "task_state": context["view"].task_state}
        yield moment, moment, str(instance.uuid), {**payload, "html": html}

    return _stream(request, changes)


def _deleted(ctx, server_id):
    """A deleted instance stays visible on its page until the page is left."""
    return instances_visible(ctx, all_tenants=True, include_deleted=True).filter(uuid=server_id).first()
