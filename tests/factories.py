"""factory_boy factories for the control plane's models."""

import factory
from django.contrib.auth import get_user_model

from portal.models import Flavor, Image, Instance, Membership, Project, Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("secret")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"project{n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    project = factory.SubFactory(ProjectFactory)
    role = Role.MEMBER


class FlavorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Flavor

    flavorid = factory.Sequence(lambda n: str(100 + n))
    name = factory.Sequence(lambda n: f"f{n}.tiny")
    vcpus = 1
    memory_mb = 512
    root_gb = 1


class ImageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Image

    name = factory.Sequence(lambda n: f"image{n}")
    owner = factory.SubFactory(ProjectFactory)
    status = Image.Status.ACTIVE
    visibility = Image.Visibility.PUBLIC
    disk_format = "qcow2"
    container_format = "bare"
    size = 1024
    os_hash_algo = "sha256"
    os_hash_value = "0" * 64


class InstanceFactory(factory.django.DjangoModelFactory):
    """An instance row as the API writes it; idle ACTIVE unless told otherwise (no host, no messages)."""

    class Meta:
        model = Instance

    name = factory.Sequence(lambda n: f"vm{n}")
    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    flavor = factory.SubFactory(FlavorFactory)
    flavor_name = factory.LazyAttribute(lambda o: o.flavor.name if o.flavor else "")
    vcpus = factory.LazyAttribute(lambda o: o.flavor.vcpus if o.flavor else 1)
    memory_mb = factory.LazyAttribute(lambda o: o.flavor.memory_mb if o.flavor else 512)
    root_gb = factory.LazyAttribute(lambda o: o.flavor.root_gb if o.flavor else 1)
    image = factory.SubFactory(ImageFactory)
    image_ref = factory.LazyAttribute(lambda o: o.image.id)
    vm_state = "active"
    power_state = 1
