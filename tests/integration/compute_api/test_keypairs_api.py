"""``/os-keypairs``: import (fingerprint checked against ssh-keygen), generation, types, admins acting for
users, paging, and the shape of every microversion that changed it."""

import base64
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import pkcs12

from portal.models import Keypair, QuotaLimit

from .admin_helpers import BASE, allow_version, v

pytestmark = pytest.mark.integration


def ed25519_public_key(comment: str = "me@laptop") -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + f" {comment}"


def ssh_keygen_md5(public_key: str, tmp_path) -> str:
    path = tmp_path / "key.pub"
    path.write_text(public_key + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(path)], capture_output=True, text=True, check=True)
    return out.stdout.split()[1].removeprefix("MD5:")


def create(caller, body: dict, version: str = "2.1"):
    return caller.client.post(f"{BASE}/os-keypairs", {"keypair": body}, format="json", **v(version))


def test_import_computes_the_fingerprint_ssh_keygen_shows(member, tmp_path):
    public_key = ed25519_public_key()
    response = create(member, {"name": "laptop", "public_key": public_key})
    assert response.status_code == 200  # 2.1
    body = response.json()["keypair"]
    assert body == {
        "name": "laptop",
        "public_key": public_key,
        "fingerprint": ssh_keygen_md5(public_key, tmp_path),
        "user_id": member.user.username,
    }
    listed = member.client.get(f"{BASE}/os-keypairs").json()
    assert listed == {
        "keypairs": [{"keypair": {"name": "laptop", "public_key": public_key, "fingerprint": body["fingerprint"]}}]
    }
    shown = member.client.get(f"{BASE}/os-keypairs/laptop").json()["keypair"]
    assert shown["deleted"] is False and shown["deleted_at"] is None and shown["updated_at"] is None
    assert isinstance(shown["id"], int) and shown["user_id"] == member.user.username
    assert shown["created_at"] and "type" not in shown


@pytest.mark.parametrize(
    "public_key",
    ["ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC", "not a key", "ssh-ed25519 !!!!", ""],
)
def test_a_public_key_that_is_not_a_key_is_400(member, public_key):
    response = create(member, {"name": "k", "public_key": public_key})
    assert response.status_code == 400
    assert response.json()["badRequest"]["message"] == "Keypair data is invalid: failed to generate fingerprint"
    assert not Keypair.objects.exists()


def test_generated_key_pair_returns_a_working_private_key_once(member, tmp_path):
    response = create(member, {"name": "fresh"}, "2.2")
    assert response.status_code == 201
    body = response.json()["keypair"]
    assert body["type"] == "ssh"
    private = serialization.load_pem_private_key(body["private_key"].encode(), password=None)
    derived = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    assert body["public_key"].startswith(derived.decode() + " ")
    assert body["fingerprint"] == ssh_keygen_md5(body["public_key"], tmp_path)
    assert "private_key" not in member.client.get(f"{BASE}/os-keypairs/fresh", **v("2.2")).json()["keypair"]


def test_x509_key_pairs(member):
    generated = create(member, {"name": "win", "type": "x509"}, "2.2").json()["keypair"]
    cert = x509.load_pem_x509_certificate(generated["public_key"].encode())
    assert cert.subject.rfc4514_string() == f"CN={member.user.username}"
    expected = ":".join(f"{b:02x}" for b in cert.fingerprint(hashes.SHA1()))  # noqa: S303 - the API's fingerprint
    assert generated["fingerprint"] == expected
    key, bundled_cert, _ = pkcs12.load_key_and_certificates(base64.b64decode(generated["private_key"]), None)
    assert bundled_cert == cert and key is not None

    imported = create(member, {"name": "win2", "type": "x509", "public_key": generated["public_key"]}, "2.2")
    assert imported.status_code == 201
    assert imported.json()["keypair"]["fingerprint"] == expected
    not_a_cert = create(member, {"name": "win3", "type": "x509", "public_key": ed25519_public_key()}, "2.2")
    assert not_a_cert.status_code == 400
    assert "failed to generate X509 fingerprint" in not_a_cert.json()["badRequest"]["message"]
    bad_type = create(member, {"name": "k", "type": "pgp"}, "2.2")
    assert bad_type.status_code == 400
    # ``type`` is not part of the 2.1 request.
    assert create(member, {"name": "k", "type": "ssh"}, "2.1").status_code == 400


@pytest.mark.parametrize("name", ["", " lead", "trail ", "semi;colon", "a" * 256, "dot.name", "at@name"])
def test_invalid_names_are_400_before_2_92(member, name):
    assert create(member, {"name": name, "public_key": ed25519_public_key()}).status_code == 400


def test_dots_and_at_signs_are_allowed_from_2_92_where_a_public_key_is_required(member, monkeypatch):
    allow_version(monkeypatch, "2.92")
    assert create(member, {"name": "me@laptop.home", "public_key": ed25519_public_key()}, "2.92").status_code == 201
    required = create(member, {"name": "nokey"}, "2.92")
    assert required.status_code == 400
    assert "public_key" in required.json()["badRequest"]["message"]


def test_duplicate_name_is_409_but_other_users_may_reuse_it(member, stranger):
    public_key = ed25519_public_key()
    assert create(member, {"name": "k", "public_key": public_key}).status_code == 200
    again = create(member, {"name": "k", "public_key": public_key})
    assert again.status_code == 409
    assert again.json()["conflictingRequest"]["message"] == "Key pair 'k' already exists."
    assert create(stranger, {"name": "k", "public_key": public_key}).status_code == 200


def test_key_pairs_are_private_to_their_user(member, reader):
    create(member, {"name": "mine", "public_key": ed25519_public_key()})
    # ``reader`` is in the same project, yet key pairs belong to users, not projects.
    assert reader.client.get(f"{BASE}/os-keypairs").json() == {"keypairs": []}
    assert reader.client.get(f"{BASE}/os-keypairs/mine").status_code == 404
    assert reader.client.delete(f"{BASE}/os-keypairs/mine").status_code == 404
    other = reader.client.get(f"{BASE}/os-keypairs?user_id={member.user.username}", **v("2.10"))
    assert other.status_code == 403


def test_delete_is_202_then_204_from_2_2(member):
    for name in ("a", "b"):
        create(member, {"name": name, "public_key": ed25519_public_key()})
    assert member.client.delete(f"{BASE}/os-keypairs/a").status_code == 202
    assert member.client.delete(f"{BASE}/os-keypairs/b", **v("2.2")).status_code == 204
    assert not Keypair.objects.exists()


def test_admins_manage_other_users_key_pairs_from_2_10(admin, member):
    public_key = ed25519_public_key()
    made = create(admin, {"name": "theirs", "public_key": public_key, "user_id": member.user.username}, "2.10")
    assert made.status_code == 201
    assert made.json()["keypair"]["user_id"] == member.user.username
    assert Keypair.objects.get(name="theirs").user == member.user
    assert member.client.get(f"{BASE}/os-keypairs/theirs").status_code == 200
    listed = admin.client.get(f"{BASE}/os-keypairs?user_id={member.user.username}", **v("2.10")).json()["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["theirs"]
    assert admin.client.get(f"{BASE}/os-keypairs", **v("2.10")).json()["keypairs"] == []
    shown = admin.client.get(f"{BASE}/os-keypairs/theirs?user_id={member.user.username}", **v("2.10"))
    assert shown.json()["keypair"]["user_id"] == member.user.username
    # Before 2.10 the user_id is ignored: the admin's own key pairs are meant.
    assert admin.client.get(f"{BASE}/os-keypairs/theirs?user_id={member.user.username}", **v("2.9")).status_code == 404
    gone = admin.client.delete(f"{BASE}/os-keypairs/theirs?user_id={member.user.username}", **v("2.10"))
    assert gone.status_code == 204
    nobody = create(admin, {"name": "x", "public_key": public_key, "user_id": "999999"}, "2.10")
    assert nobody.status_code == 400
    member_for_admin = create(member, {"name": "x", "public_key": public_key, "user_id": admin.user.username}, "2.10")
    assert member_for_admin.status_code == 403


def test_paging_from_2_35(member):
    for name in ("d", "a", "c", "b"):
        create(member, {"name": name, "public_key": ed25519_public_key()})
    first = member.client.get(f"{BASE}/os-keypairs?limit=2", **v("2.35")).json()
    assert [k["keypair"]["name"] for k in first["keypairs"]] == ["a", "b"]
    assert "marker=b" in first["keypairs_links"][0]["href"]
    second = member.client.get(f"{BASE}/os-keypairs?limit=2&marker=b", **v("2.35")).json()
    assert [k["keypair"]["name"] for k in second["keypairs"]] == ["c", "d"]
    assert "keypairs_links" not in second
    assert member.client.get(f"{BASE}/os-keypairs?marker=zz", **v("2.35")).status_code == 400
    # Before 2.35 there is no paging: limit is ignored.
    assert len(member.client.get(f"{BASE}/os-keypairs?limit=2", **v("2.34")).json()["keypairs"]) == 4


def test_key_pair_quota_is_enforced(member):
    QuotaLimit.objects.create(project=member.project, user=member.user, resource="key_pairs", hard_limit=1)
    assert create(member, {"name": "one", "public_key": ed25519_public_key()}).status_code == 200
    over = create(member, {"name": "two", "public_key": ed25519_public_key()})
    assert over.status_code == 403
    assert over.json()["forbidden"]["message"] == "Quota exceeded, too many key pairs."


def test_keypair_list_queries_do_not_grow(member, django_assert_max_num_queries):
    for n in range(2):
        create(member, {"name": f"k{n}", "public_key": ed25519_public_key()})
    with django_assert_max_num_queries(8) as few:
        member.client.get(f"{BASE}/os-keypairs", **v("2.35"))
    baseline = len(few.captured_queries)
    for n in range(2, 20):
        create(member, {"name": f"k{n}", "public_key": ed25519_public_key()})
    with django_assert_max_num_queries(baseline):
        assert len(member.client.get(f"{BASE}/os-keypairs", **v("2.35")).json()["keypairs"]) == 20
