"""Which hosts may speak, and whether the conductor believes a message.

An operator enrolls a host (``host_enroll``): the host gets a private key, the cloud keeps its public half.
Every message to the conductor then passes ``message_accept``: signed by an enrolled host (or the control
plane), addressed to the conductor, fresh, not seen before, allowed from that sender, and about the
sender itself. A refused message changes nothing; it is logged and counted (``MessageRefusal``), and
admins see the counts.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F
from django.utils import timezone

from compute_tasks import rpc, signing
from portal.models import ComputeHost, HostCredential, MessageRefusal, SeenMessage
from portal.selectors.rows import CompiledQuery, prepared_cursor

log = logging.getLogger(__name__)

Reason = MessageRefusal.Reason
UNKNOWN_SENDER = "(unknown)"


# --- the control plane's own key ----------------------------------------------------------------------


@functools.cache
def _control_plane_key(secret: str) -> Any:
    return signing.private_key_from_secret(secret)


def control_plane_signer() -> signing.Signer:
    return signing.Signer(signing.CONTROL_PLANE, _control_plane_key(settings.CLOUD["SIGNING_KEY"]))


def control_plane_public_key() -> str:
    return signing.encode_public(_control_plane_key(settings.CLOUD["SIGNING_KEY"]))


def public_key_of(sender: str) -> Any:
    """The key ``sender`` is known by: the control plane's, or the active credential of an enrolled host."""
    if sender == signing.CONTROL_PLANE:
        return _control_plane_key(settings.CLOUD["SIGNING_KEY"]).public_key()
    encoded = (
        HostCredential.objects.filter(host__name=sender, revoked_at__isnull=True)
        .values_list("public_key", flat=True)
        .first()
    )
    if not encoded:
        _remembered_keys.pop(sender, None)
        return None
    return _remember(sender, encoded)[1]


def _key_and_seen(sender: str, nonce: str) -> tuple[Any, bool]:
    """``public_key_of(sender)``, and whether ``nonce`` was acted on already: one query."""
    rows = _KEY_AND_SEEN_QUERY.rows("key", sender=sender, nonce=nonce)
    if not rows:
        _remembered_keys.pop(sender, None)
        return None, False
    encoded, seen = rows[0]
    return _remember(sender, encoded)[1], seen


_KEY_AND_SEEN_QUERY = CompiledQuery(
    lambda _shape, *, sender, nonce: (
        HostCredential.objects.filter(host__name=sender, revoked_at__isnull=True)
        .annotate(seen=Exists(SeenMessage.objects.filter(nonce=nonce)))
        .order_by("-created_at")
        .values_list("public_key", "seen")[:1]
    )
)


# The key each host was last believed with in this process (encoded, decoded). Nothing may be believed
# on it alone: only a write that checks, in its own statement, that it is still the host's active key.
_remembered_keys: dict[str, tuple[str, Any]] = {}


def _remember(sender: str, encoded: str) -> tuple[str, Any]:
    """``sender``'s key (encoded, decoded), decoded again only when it is not the one remembered."""
    remembered = _remembered_keys.get(sender)
    if remembered is None or remembered[0] != encoded:
        remembered = _remembered_keys[sender] = (encoded, signing.decode_public(encoded))
    return remembered


# A process that meets a host it remembers no key for reads every host's active key at once, at most this
# often: else each conductor process would take each host's first message through the full check (a
# thousand hosts, four processes: four thousand beats). An unknown or forged sender costs that one read
# per interval at most, and still goes through the full check.
REMEMBER_ALL_EVERY = 60.0
_remembered_all_at = [-REMEMBER_ALL_EVERY]


def _remember_active_keys(sender: str) -> tuple[str, Any] | None:
    now = time.monotonic()
    if now - _remembered_all_at[0] < REMEMBER_ALL_EVERY:
        return None
    _remembered_all_at[0] = now
    active = HostCredential.objects.filter(revoked_at__isnull=True, host__deleted_at__isnull=True)
    for name, encoded in active.values_list("host__name", "public_key"):
        _remember(name, encoded)
    return _remembered_keys.get(sender)


def remembered_key_accept(*, task: str, message: Any, auth: Any) -> tuple[signing.Verified, str] | None:
    """A host's message about itself, verified with the key this process last believed the host with,
    without reading the key again: ``(verified, that key encoded)``; None when no key is remembered, the
    signature does not match it, or the message is not about its sender.

    The caller must then write only where that key is still the host's active credential (a revoked or
    replaced key matches nothing), and take the message through ``message_accept`` when the write found
    nothing, or when this returns None: a refusal is always decided and counted there."""
    sender = str(auth.get("sender", "")) if isinstance(auth, dict) else ""
    remembered = _remembered_keys.get(sender) or _remember_active_keys(sender)
    if remembered is None:
        return None
    try:
        verified = rpc.verify(task, rpc.CONDUCTOR_QUEUE, message, auth, public_key_of=lambda _sender: remembered[1])
    except signing.Refused:
        return None
    if not isinstance(message, dict) or message.get("host") != verified.sender:
        return None
    return verified, remembered[0]


# --- enrollment ----------------------------------------------------------------------------------------


def host_enroll(
    *, name: str, console_address: str = "127.0.0.1", runs_routers: bool | None = None
) -> tuple[ComputeHost, signing.Ed25519PrivateKey]:
    """Enroll ``name`` with a new key (a host enrolled before is re-keyed: its old key is revoked) and
    return the private key, which the cloud does not keep. The host's row exists from now on, enabled,
    with no resources until its first heartbeat."""
    key = signing.new_private_key()
    host = host_enroll_many(
        names=[name],
        console_address=console_address,
        public_keys={name: signing.encode_public(key)},
        runs_routers=runs_routers,
    )[name]
    return host, key


def host_enroll_many(
    *,
    names: Iterable[str],
    public_keys: Mapping[str, str],
    console_address: str = "127.0.0.1",
    runs_routers: bool | None = None,
) -> dict[str, ComputeHost]:
    """Enroll each host with the public key given for it (made by the host itself, or by ``host_enroll``).
    A host whose active key is that key already is left as it is; any other active key is revoked.
    ``runs_routers`` (None: as it was, False for a new host) trusts the hosts with routers or not."""
    names = list(dict.fromkeys(names))
    now = timezone.now()
    with transaction.atomic():
        hosts = {host.name: host for host in ComputeHost.objects.for_change().filter(name__in=names)}
        new = [ComputeHost(name=name, console_address=console_address) for name in names if name not in hosts]
        for host in ComputeHost.objects.bulk_create(new):
            hosts[host.name] = host
        ComputeHost.objects.filter(name__in=names).exclude(console_address=console_address).update(
            console_address=console_address
        )
        if runs_routers is not None:
            ComputeHost.objects.filter(name__in=names).update(runs_routers=runs_routers)
        active = dict(
            HostCredential.objects.filter(host__name__in=names, revoked_at__isnull=True).values_list(
                "host__name", "public_key"
            )
        )
        changed = [name for name in names if active.get(name) != public_keys[name]]
        taken = set(
            HostCredential.objects.filter(public_key__in=[public_keys[name] for name in changed]).values_list(
                "host__name", flat=True
            )
        )
        if taken:
            # A revoked key stays revoked, and one key speaks for one host only.
            raise ValueError(f"the key given for {', '.join(sorted(taken))} was enrolled before: make a new one")
        HostCredential.objects.filter(host__name__in=changed, revoked_at__isnull=True).update(revoked_at=now)
        HostCredential.objects.bulk_create(
            HostCredential(
                host=hosts[name], public_key=public_keys[name], fingerprint=signing.fingerprint(public_keys[name])
            )
            for name in changed
        )
    for name in changed:
        log.info("Enrolled compute host %s (%s)", name, signing.fingerprint(public_keys[name]))
    return hosts


def host_credentials_revoke(*, host: ComputeHost) -> int:
    """Nothing signed with the host's key is believed from now on; it must be enrolled again to speak."""
    revoked = HostCredential.objects.filter(host=host, revoked_at__isnull=True).update(revoked_at=timezone.now())
    if revoked:
        log.warning("Revoked the credentials of compute host %s", host.name)
    return revoked


# --- believing a message ---------------------------------------------------------------------------------


class MessageRefused(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def message_accept(
    *, task: str, message: Any, auth: Any, from_hosts: bool = True, replay_check: bool = True
) -> signing.Verified | None:
    """The verified sender of a message on the conductor's queue, or None (refused, logged and counted).

    ``from_hosts``: compute hosts may send this task (the control plane always may). A host's message must
    name it as ``host``. ``replay_check``: refuse a nonce already acted on (``message_done`` records it);
    heartbeats instead must be newer than the last one believed (``host_heartbeat``)."""
    claimed = str(auth.get("sender", ""))[:255] if isinstance(auth, dict) else ""
    seen: list[bool] = []

    def key_of(sender: str) -> Any:
        # A host's key and whether the nonce was acted on already are read together.
        if not replay_check or sender == signing.CONTROL_PLANE:
            return public_key_of(sender)
        key, was_seen = _key_and_seen(sender, str(auth["nonce"]))
        seen.append(was_seen)
        return key

    try:
        verified = _verify(task, message, auth, key_of)
        if verified.sender != signing.CONTROL_PLANE:
            if not from_hosts:
                raise MessageRefused(Reason.NOT_ALLOWED, f"{task} is for the control plane only")
            named = message.get("host") if isinstance(message, dict) else None
            if named is not None and named != verified.sender:
                raise MessageRefused(Reason.NOT_ITS_OWN, f"host {verified.sender} spoke for host {named!r}")
            _check_console_address(verified.sender, message)
        if replay_check and (seen[0] if seen else SeenMessage.objects.filter(nonce=verified.nonce).exists()):
            raise MessageRefused(Reason.REPLAY, f"nonce {verified.nonce} was acted on already")
    except MessageRefused as refusal:
        message_refused(sender=claimed, task=task, reason=refusal.reason, detail=refusal.detail)
        return None
    return verified


def _verify(task: str, message: Any, auth: Any, key_of: Callable[[str], Any]) -> signing.Verified:
    if auth is None:
        raise MessageRefused(Reason.UNSIGNED, "the message is not signed")
    try:
        return rpc.verify(task, rpc.CONDUCTOR_QUEUE, message, auth, public_key_of=key_of)
    except signing.Refused as exc:
        raise MessageRefused(exc.reason, str(exc)) from None


def _check_console_address(host: str, message: Any) -> None:
    """A console may only point at the address the host was enrolled with: anything else would send the
    console proxy (and a user's keyboard) wherever the host likes."""
    vnc_host = message.get("vnc_host") if isinstance(message, dict) else None
    if not vnc_host:
        return
    allowed = ComputeHost.objects.filter(name=host).values_list("console_address", flat=True).first()
    if vnc_host != allowed:
        raise MessageRefused(
            Reason.NOT_ITS_OWN, f"host {host} gave console address {str(vnc_host)[:64]!r}, not its enrolled {allowed!r}"
        )


def message_done(verified: signing.Verified) -> None:
    """Remember that the message was acted on, so that the same message sent again is refused (one
    statement, which needs no transaction of its own)."""
    with prepared_cursor(connection) as cursor:
        cursor.execute(_SEEN_INSERT, [verified.nonce, timezone.now()])


_SEEN_INSERT = f"INSERT INTO {SeenMessage._meta.db_table} (nonce, seen_at) VALUES (%s, %s) ON CONFLICT DO NOTHING"  # noqa: S608


def message_refused(*, sender: str, task: str, reason: str, detail: str) -> None:
    """Log and count a refusal. Senders nobody enrolled share one row."""
    log.warning("Refused %s claiming to be from %r: %s", task, sender or "nobody", detail)
    known = sender == signing.CONTROL_PLANE or ComputeHost.objects.filter(name=sender).exists()
    row_sender = sender if known else UNKNOWN_SENDER
    now = timezone.now()
    updated = MessageRefusal.objects.filter(sender=row_sender, task=task[:255], reason=reason).update(
        count=F("count") + 1, last_at=now, last_detail=detail[:255]
    )
    if not updated:
        try:
            with transaction.atomic():
                MessageRefusal.objects.create(
                    sender=row_sender, task=task[:255], reason=reason, count=1, last_at=now, last_detail=detail[:255]
                )
        except IntegrityError:  # another refusal made the row meanwhile
            MessageRefusal.objects.filter(sender=row_sender, task=task[:255], reason=reason).update(
                count=F("count") + 1, last_at=now, last_detail=detail[:255]
            )


def purge_seen_messages() -> int:
    """Forget nonces older than any message that would still be believed."""
    horizon = timezone.now() - timedelta(seconds=signing.MAX_AGE_SECONDS + signing.MAX_CLOCK_SKEW_SECONDS)
    deleted, _ = SeenMessage.objects.filter(seen_at__lt=horizon).delete()
    return deleted
