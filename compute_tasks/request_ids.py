"""The request a process is working for, so that one grep follows a request through every process.

The API gives every request an id (``req-<uuid>``, as Nova does) and answers with it; the id is the
instance action's ``request_id``, and travels inside every message the request causes, signed with the
rest of the body (``rpc._send`` puts it under ``_request_id``). Each process holds the id of the work it
is doing in a context variable: the API for the length of a request, a worker while it handles a task
whose message was believed (and Celery's line about how that task ended). ``RequestIdFilter`` puts it
on every log record as ``request_id`` (``-`` when there is none), and every process's log format
prints it.

A host that calls the API for a request (to download an image for a build) names the request in
``X-Openstack-Request-Id``; the API's line about that call shows it as ``global_request_id``.

Only an id of the shape the API makes is taken from a message or a header: it goes into log lines,
which must not be forged through it.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Any

from celery import current_task, signals

# The key under which a message body carries the id of the request that caused it.
MESSAGE_KEY = "_request_id"
# The header an API answers with; a host sends it to the API when it calls it for a request (an image
# download for a build): the API does not take it as its own request's id, but logs it beside it.
HEADER = "X-Openstack-Request-Id"
# What a log line shows when it is about no request.
NONE = "-"
# Every process's log lines: the time, the level, the process, the request, the logger.
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s [%(request_id)s] %(name)s: %(message)s"
# Celery's task loggers add the task to that.
TASK_LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s [%(request_id)s] %(task_name)s[%(task_id)s]: %(message)s"

_SHAPE = re.compile(r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


def new() -> str:
    return f"req-{uuid.uuid4()}"


def well_formed(value: Any) -> bool:
    return isinstance(value, str) and _SHAPE.fullmatch(value) is not None


def current() -> str | None:
    """The id of the request this thread works for, or None."""
    return _current.get()


def use(request_id: str | None) -> Token:
    """Work for ``request_id`` from now on (None, or an id of another shape: for no request)."""
    return _current.set(request_id if well_formed(request_id) else None)


def reset(token: Token) -> None:
    _current.reset(token)


# Where a task running in a worker keeps the id for Celery's own line about how it ended, which Celery
# writes after the task's code returned (or raised).
_TASK_ATTRIBUTE = "cloud_request_id"


@contextmanager
def working_for(request_id: str | None) -> Iterator[None]:
    """Work for ``request_id`` (of any shape: see ``use``) inside the block: a task's handling of a
    believed message."""
    token = use(request_id)
    if current_task and not current_task.request.called_directly:
        setattr(current_task.request, _TASK_ATTRIBUTE, _current.get())
    try:
        yield
    finally:
        reset(token)


def _of_running_task() -> str | None:
    return getattr(current_task.request, _TASK_ATTRIBUTE, None) if current_task else None


def outgoing_headers() -> dict[str, str]:
    """The headers of an HTTP call to the API made while working for a request: that request's id."""
    request_id = _current.get()
    return {HEADER: request_id} if request_id else {}


def of_message(body: Any) -> str | None:
    """The id of the request a message body belongs to: the one the sender worked for, else the message's
    own ``request_id`` field (a sender that predates ``_request_id``)."""
    if not isinstance(body, dict):
        return None
    for key in (MESSAGE_KEY, "request_id"):
        if well_formed(body.get(key)):
            return body[key]
    return None


class RequestIdFilter(logging.Filter):
    """Puts ``request_id`` on every record that passes the handler it is on (``-`` for none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _current.get() or _of_running_task() or NONE
        return True


def add_filter_to_handlers(logger: logging.Logger) -> None:
    """Give each handler of ``logger`` the filter once (Celery's loggers, which it sets up itself)."""
    for handler in logger.handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


@signals.after_setup_logger.connect(weak=False)
@signals.after_setup_task_logger.connect(weak=False)
def _filter_celery_handlers(logger: logging.Logger | None = None, **_: Any) -> None:
    if logger is not None:
        add_filter_to_handlers(logger)
