"""Quota enforcement on every create path, the per-user limits on top of the project's, and the admin."""

import pytest
from django.db import transaction

from portal.auth.context import RequestContext
from portal.models import Instance, Keypair, QuotaClassLimit, QuotaLimit, ServerGroup
from portal.services import quotas
from portal.services.instances import ServerSpec, instance_create
from tests.factories import FlavorFactory, ImageFactory, InstanceFactory, MembershipFactory

pytestmark = pytest.mark.integration

V = {"HTTP_OPENSTACK_API_VERSION": "compute 2.47"}


@pytest.fixture
def ctx(db):
    membership = MembershipFactory()
    return RequestContext(user=membership.user, project=membership.project, role=membership.role)


def boot(ctx, flavor, image, **kwargs):
    return instance_create(ctx=ctx, spec=ServerSpec(name="vm", flavor=flavor, image=image, **kwargs))


def test_cores_and_ram_are_checked_together(ctx):
    QuotaLimit.objects.create(project=ctx.project, resource="cores", hard_limit=3)
    QuotaLimit.objects.create(project=ctx.project, resource="ram", hard_limit=1024)
    flavor = FlavorFactory(vcpus=2, memory_mb=512)
    image = ImageFactory(owner=ctx.project)
    boot(ctx, flavor, image)
    with pytest.raises(quotas.QuotaExceeded) as refused:
        boot(ctx, FlavorFactory(vcpus=2, memory_mb=1024), image)
    assert str(refused.value) == (
        "Quota exceeded for cores, ram: Requested 2, 1024, but already used 2, 512 of 3, 1024 cores, ram"
    )
    assert Instance.objects.filter(project=ctx.project).count() == 1


def test_deleted_instances_give_their_room_back(ctx):
    QuotaLimit.objects.create(project=ctx.project, resource="instances", hard_limit=1)
    image = ImageFactory(owner=ctx.project)
    flavor = FlavorFactory()
    InstanceFactory(project=ctx.project, user=ctx.user, image=image, vm_state="deleted")
    InstanceFactory(project=ctx.project, user=ctx.user, image=image, vm_state="error")
    with pytest.raises(quotas.QuotaExceeded, match="already used 1 of 1 instances"):
        boot(ctx, flavor, image)
    Instance.objects.filter(project=ctx.project, vm_state="error").update(vm_state="deleted")
    boot(ctx, flavor, image)


def test_unlimited(ctx):
    QuotaClassLimit.objects.create(resource="instances", hard_limit=0)
    QuotaLimit.objects.create(project=ctx.project, resource="instances", hard_limit=-1)
    image, flavor = ImageFactory(owner=ctx.project), FlavorFactory()
    for _ in range(12):
        boot(ctx, flavor, image)


def test_default_class_applies_without_project_limits(ctx):
    QuotaClassLimit.objects.create(resource="instances", hard_limit=0)
    with pytest.raises(quotas.QuotaExceeded, match="already used 0 of 0 instances"):
        boot(ctx, FlavorFactory(), ImageFactory(owner=ctx.project))


def test_a_users_own_limit_is_enforced_on_top_of_the_projects(ctx):
    other = MembershipFactory(project=ctx.project)
    other_ctx = RequestContext(user=other.user, project=ctx.project, role=other.role)
    QuotaLimit.objects.create(project=ctx.project, user=ctx.user, resource="instances", hard_limit=1)
    image, flavor = ImageFactory(owner=ctx.project), FlavorFactory()
    boot(ctx, flavor, image)
    with pytest.raises(quotas.QuotaExceeded, match="already used 1 of 1 instances"):
        boot(ctx, flavor, image)
    boot(other_ctx, flavor, image)  # the other user only has the project's limit of 10
    assert Instance.objects.filter(project=ctx.project).count() == 2


def test_metadata_items(ctx):
    QuotaLimit.objects.create(project=ctx.project, resource="metadata_items", hard_limit=2)
    image, flavor = ImageFactory(owner=ctx.project), FlavorFactory()
    boot(ctx, flavor, image, metadata={"a": "1", "b": "2"})
    with pytest.raises(quotas.QuotaExceeded, match="metadata items"):
        boot(ctx, flavor, image, metadata={"a": "1", "b": "2", "c": "3"})


def test_over_quota_through_the_api_is_403(member):
    QuotaLimit.objects.create(project=member.project, resource="instances", hard_limit=0)
    FlavorFactory(flavorid="1")
    image = ImageFactory(owner=member.project)
    body = {"server": {"name": "vm", "imageRef": str(image.id), "flavorRef": "1", "networks": "none"}}
    response = member.client.post("/compute/v2.1/servers", body, format="json", **V)
    assert response.status_code == 403
    assert response.json() == {
        "forbidden": {
            "code": 403,
            "message": "Quota exceeded for instances: Requested 1, but already used 0 of 0 instances",
        }
    }
    # A multiple create is all or nothing: none of the batch stays when one does not fit.
    QuotaLimit.objects.filter(project=member.project).update(hard_limit=2)
    body["server"].update(min_count=3, max_count=3)
    response = member.client.post("/compute/v2.1/servers", body, format="json", **V)
    assert response.status_code == 403
    assert not Instance.objects.filter(project=member.project).exists()


def test_quota_check_must_run_inside_the_creating_transaction(transactional_db):
    membership = MembershipFactory()
    ctx = RequestContext(user=membership.user, project=membership.project, role=membership.role)
    with pytest.raises(RuntimeError):
        quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_groups")


def test_key_pairs_server_groups_and_members(ctx):
    QuotaLimit.objects.create(project=ctx.project, resource="key_pairs", hard_limit=1)
    QuotaLimit.objects.create(project=ctx.project, resource="server_groups", hard_limit=1)
    QuotaLimit.objects.create(project=ctx.project, resource="server_group_members", hard_limit=1)
    with transaction.atomic():
        quotas.quota_check(project=ctx.project, user=ctx.user, resource="key_pairs")
        Keypair.objects.create(user=ctx.user, name="k", public_key="ssh-ed25519 AAAA", fingerprint="f")
        with pytest.raises(quotas.QuotaExceeded, match="too many key pairs"):
            quotas.quota_check(project=ctx.project, user=ctx.user, resource="key_pairs")

        quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_groups")
        group = ServerGroup.objects.create(project=ctx.project, user=ctx.user, name="g", policy="affinity")
        with pytest.raises(quotas.QuotaExceeded, match="too many server groups"):
            quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_groups")

        quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_group_members", group=group)
        InstanceFactory(project=ctx.project, user=ctx.user, server_group=group)
        with pytest.raises(quotas.QuotaExceeded, match="too many servers in group"):
            quotas.quota_check(project=ctx.project, user=ctx.user, resource="server_group_members", group=group)
        with pytest.raises(ValueError):
            quotas.quota_check(project=ctx.project, user=ctx.user, resource="volumes")


def test_admin_sets_limits_through_the_service(admin_client, db):
    project = MembershipFactory().project
    response = admin_client.post(
        "/admin/portal/quotalimit/add/", {"project": project.pk, "resource": "instances", "hard_limit": 3}
    )
    assert response.status_code == 302, response.content[:2000]
    assert QuotaLimit.objects.get(project=project, user=None).hard_limit == 3
    bad = admin_client.post("/admin/portal/quotalimit/add/", {"project": project.pk, "resource": "x", "hard_limit": 3})
    assert bad.status_code == 200 and QuotaLimit.objects.count() == 1
    response = admin_client.post(
        "/admin/portal/quotaclasslimit/add/", {"class_name": "default", "resource": "cores", "hard_limit": 64}
    )
    assert response.status_code == 302
    assert QuotaClassLimit.objects.get(class_name="default", resource="cores").hard_limit == 64


def test_a_quota_check_makes_other_quota_checks_wait_but_not_rows_that_refer_to_the_project(transactional_db):
    """The project's lock serialises quota checks, while another transaction may still write rows that
    refer to the project (an action, an event, a limit): their foreign-key checks do not wait for it."""
    import threading

    from django.db import OperationalError, connection

    project = MembershipFactory().project
    outcomes: dict[str, str] = {}

    def elsewhere(name, work):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL lock_timeout = '1s'")
                work()
            outcomes[name] = "done"
        except OperationalError as error:
            outcomes[name] = "waited" if "lock timeout" in str(error) else str(error)
        finally:
            connection.close()

    with transaction.atomic():
        quotas.instance_quota_check(project=project, user=None)
        for name, work in {
            "refers": lambda: QuotaLimit.objects.create(project=project, resource="cores", hard_limit=4),
            "checks": lambda: quotas.instance_quota_check(project=project, user=None),
        }.items():
            thread = threading.Thread(target=elsewhere, args=(name, work))
            thread.start()
            thread.join(10)
    assert outcomes == {"refers": "done", "checks": "waited"}
    assert QuotaLimit.objects.filter(project=project, resource="cores").exists()
