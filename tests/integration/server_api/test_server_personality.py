"""Personality files (compute API before 2.57): taken on create and rebuild, bounded by the personality
quotas with Nova's refusals, kept with the server and sent to its host for the config drive."""

import base64

import pytest

from compute_tasks import rpc
from portal.models import Instance, QuotaLimit
from portal.services.host_requests import build_request

from .helpers import action, boot, booted, on_host

pytestmark = pytest.mark.integration


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MOTD = {"path": "/etc/motd", "contents": b64(b"welcome\n")}


def limit(project, resource, hard_limit, user=None):
    QuotaLimit.objects.create(project=project, user=user, resource=resource, hard_limit=hard_limit)


def message(response, kind="forbidden"):
    return response.json()[kind]["message"]


def test_create_keeps_the_files_and_sends_them_to_the_host(member, flavor, image):
    files = [MOTD, {"path": "/root/.hushlogin", "contents": ""}]
    instance = booted(member, flavor, image, version="2.56", personality=files, config_drive=True)
    assert instance.personality == files
    build = build_request(instance, "req-1")
    assert build.metadata.files == [rpc.InjectedFile(**f) for f in files]
    # Through the message's JSON and back, as the host receives it.
    assert rpc.BuildRequest.from_dict(build.to_dict()).metadata.files == build.metadata.files


def test_an_empty_personality_is_no_files(member, flavor, image):
    assert booted(member, flavor, image, version="2.56", personality=[]).personality == []


@pytest.mark.parametrize(
    ("personality", "version"),
    [
        ([MOTD], "2.57"),  # gone: an unknown property
        ([{"path": "/etc/motd", "contents": "This is a test file."}], "2.56"),  # not base64
        ([{"path": "/etc/motd"}], "2.56"),
        ([{"path": "/etc/motd", "contents": b64(b"x"), "mode": "0600"}], "2.56"),
        ([{"path": 5, "contents": b64(b"x")}], "2.56"),
        (["/etc/motd"], "2.56"),
        ({"path": "/etc/motd", "contents": b64(b"x")}, "2.56"),
        (None, "2.56"),
        ([{"path": "/etc/\u0000motd", "contents": b64(b"x")}], "2.56"),  # what the database cannot hold
    ],
)
def test_bad_personality_on_create_is_400(member, flavor, image, server_microversions, personality, version):
    response = boot(member, flavor, image, version=version, personality=personality)
    assert response.status_code == 400, response.content
    assert not Instance.objects.exists()


def test_base64_is_taken_as_nova_takes_it(member, flavor, image):
    wrapped = {"path": "/etc/motd", "contents": "d2Vs\nY29tZQo="}  # line-wrapped, as base64(1) writes it
    assert booted(member, flavor, image, version="2.56", personality=[wrapped]).personality == [wrapped]


def test_the_number_of_files_is_bounded_by_injected_files(member, flavor, image):
    limit(member.project, "injected_files", 2)
    files = [{"path": f"/etc/f{n}", "contents": b64(b"x")} for n in range(3)]
    response = boot(member, flavor, image, version="2.56", personality=files)
    assert response.status_code == 403, response.content
    assert message(response) == "Personality file limit exceeded"
    assert not Instance.objects.exists()
    assert booted(member, flavor, image, version="2.56", personality=files[:2]).personality == files[:2]


def test_the_default_limit_is_nova_s_five_files(member, flavor, image):
    files = [{"path": f"/etc/f{n}", "contents": b64(b"x")} for n in range(6)]
    assert boot(member, flavor, image, version="2.56", personality=files).status_code == 403
    assert booted(member, flavor, image, version="2.56", personality=files[:5])


def test_path_and_content_lengths_are_bounded(member, flavor, image):
    limit(member.project, "injected_file_path_bytes", 10)
    limit(member.project, "injected_file_content_bytes", 8)  # of the base64 text, as Nova counts
    long_path = {"path": "/etc/motd.d", "contents": b64(b"x")}
    response = boot(member, flavor, image, version="2.56", personality=[long_path])
    assert (response.status_code, message(response)) == (403, "Personality file path exceeds maximum 10")
    big = {"path": "/etc/motd", "contents": b64(b"1234567")}  # 12 characters
    response = boot(member, flavor, image, version="2.56", personality=[big])
    assert (response.status_code, message(response)) == (403, "Personality file content exceeds maximum 8")
    # Both over: the path is named, as in Nova.
    response = boot(member, flavor, image, version="2.56", personality=[{**big, "path": "/etc/motd.d"}])
    assert message(response) == "Personality file path exceeds maximum 10"
    assert not Instance.objects.exists()
    fits = {"path": "/etc/motd", "contents": b64(b"12345")}  # 8 characters
    assert booted(member, flavor, image, version="2.56", personality=[fits]).personality == [fits]


def test_a_user_s_own_limit_counts_and_unlimited_is_unlimited(member, flavor, image):
    limit(member.project, "injected_files", -1)
    limit(member.project, "injected_files", 1, user=member.user)
    files = [MOTD, {**MOTD, "path": "/etc/issue"}]
    response = boot(member, flavor, image, version="2.56", personality=files)
    assert (response.status_code, message(response)) == (403, "Personality file limit exceeded")
    QuotaLimit.objects.filter(user=member.user).delete()
    assert booted(member, flavor, image, version="2.56", personality=files * 5).personality == files * 5


@pytest.fixture
def server(member, flavor, image):
    return on_host(booted(member, flavor, image, version="2.56", personality=[MOTD], config_drive=True))


@pytest.fixture
def sent(monkeypatch):
    calls = []
    monkeypatch.setattr(rpc, "rebuild_instance", lambda host, message: calls.append(message))
    return calls


def test_rebuild_with_personality_replaces_the_files(member, server, image, sent, django_capture_on_commit_callbacks):
    files = [{"path": "/etc/issue", "contents": b64(b"rebuilt\n")}]
    with django_capture_on_commit_callbacks(execute=True):
        response = action(member, server, {"rebuild": {"imageRef": str(image.id), "personality": files}}, "2.56")
    assert response.status_code == 202, response.content
    server.refresh_from_db()
    assert server.personality == files
    assert sent[0].build.metadata.files == [rpc.InjectedFile(**files[0])]


def test_rebuild_without_personality_keeps_the_files(member, server, image, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert action(member, server, {"rebuild": {"imageRef": str(image.id)}}, "2.56").status_code == 202
    server.refresh_from_db()
    assert server.personality == [MOTD]
    assert sent[0].build.metadata.files == [rpc.InjectedFile(**MOTD)]


@pytest.mark.parametrize(
    ("personality", "version", "status"),
    [
        ([MOTD], "2.57", 400),  # gone: an unknown property
        ([{"path": "/etc/motd", "contents": "This is a test file."}], "2.56", 400),
        ([{"path": f"/etc/f{n}", "contents": b64(b"x")} for n in range(6)], "2.56", 403),
    ],
)
def test_bad_personality_on_rebuild_is_refused(
    member, server, image, server_microversions, sent, personality, version, status
):
    response = action(member, server, {"rebuild": {"imageRef": str(image.id), "personality": personality}}, version)
    assert response.status_code == status, response.content
    if status == 403:
        assert message(response) == "Personality file limit exceeded"
    server.refresh_from_db()
    assert (server.task_state, server.personality) == (None, [MOTD])
    assert sent == []
