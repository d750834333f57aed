"""What a message to the conductor or a host shows outside its signed body: Celery writes the text of a
task's arguments into the message's headers (``argsrepr``), which workers log and events carry. A user's
Keystone token travels in a boot's schedule request (for Cinder); it must not be in that text, nor the
user data a build carries."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings

from compute_tasks import rpc
from tests.processes import purge_broker

pytestmark = pytest.mark.integration

TOKEN = "gAAAAAB-a-users-keystone-token-that-must-stay-in-the-body"


def sent_messages(queue: str) -> list[dict]:
    return [json.loads(raw) for raw in redis.Redis.from_url(settings.CELERY_BROKER_URL).lrange(queue, 0, -1)]


def test_a_users_token_is_not_in_the_arguments_text():
    purge_broker()
    request = rpc.ScheduleRequest(instance_uuid="0b6f3c1e-6a53-4f39-9d4e-8f0f3a1c2d3e", user_token=TOKEN)
    rpc.schedule_and_build(request)
    (message,) = sent_messages(rpc.CONDUCTOR_QUEUE)
    headers = message["headers"]
    assert headers["task"] == rpc.SCHEDULE_AND_BUILD
    assert headers["argsrepr"] == "(ScheduleRequest)"
    assert TOKEN not in json.dumps(headers)
    # The body still carries it, signed, for the conductor.
    assert TOKEN in base64.b64decode(message["body"]).decode()
