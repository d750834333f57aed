"""Who sent a message: Ed25519 signatures over every message between the control plane and the hosts.

The broker carries messages but vouches for nobody: anyone who can reach it (a compromised host, a guest
that reached the host's loopback) can put any task on any queue. So every message carries an ``auth``
block signed by its sender's key: the control plane signs with one key whose public half every host
holds; each host signs with its own key, whose public half the control plane recorded when an operator
enrolled the host. The signature covers the task name, the recipient, the sender, the time and a nonce
as well as the body, so a signed message cannot be re-addressed to another host, re-labelled as another
task, or sent again unnoticed (receivers keep the nonces they acted on; see ``NonceStore``).

Asymmetric keys keep the control plane from holding anything a host could sign with: a leak of the
database's public keys lets nobody speak as a host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

CONTROL_PLANE = "control-plane"  # the sender name of everything the control plane signs
AUTH_VERSION = 1

# A message older than this is refused whatever its signature: its nonce may be forgotten by then.
MAX_AGE_SECONDS = 3600.0
# Clocks differ a little between machines; a message from further in the future is refused.
MAX_CLOCK_SKEW_SECONDS = 300.0


class Refused(Exception):
    """The message is not believed. ``reason`` is one of the codes below; the text says more (never any
    key material)."""

    def __init__(self, reason: str, text: str):
        super().__init__(text)
        self.reason = reason


UNSIGNED = "unsigned"
UNKNOWN_SENDER = "unknown-sender"
BAD_SIGNATURE = "bad-signature"
MISADDRESSED = "misaddressed"
STALE = "stale"


# --- keys ----------------------------------------------------------------------------------------------


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def private_key_from_secret(secret: str) -> Ed25519PrivateKey:
    """The control plane's key, derived from a secret string of the settings (it has 256 bits or more)."""
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"cloud-signing:" + secret.encode()).digest())


def encode_private(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def decode_private(text: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))


def encode_public(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def decode_public(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))


def fingerprint(public_key: str) -> str:
    """A short, stable name for a public key, for the admin and the logs."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(public_key)).digest()).decode()[:16]


# --- envelopes -----------------------------------------------------------------------------------------


def _signed_bytes(task: str, recipient: str, sender: str, sent_at: float, nonce: str, body: Any) -> bytes:
    document = {
        "v": AUTH_VERSION,
        "task": task,
        "recipient": recipient,
        "sender": sender,
        "sent_at": sent_at,
        "nonce": nonce,
        "body": body,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Signer:
    """Signs as one sender."""

    sender: str
    key: Ed25519PrivateKey

    def sign(self, task: str, recipient: str, body: Any, *, now: float | None = None) -> dict[str, Any]:
        sent_at = round(time.time() if now is None else now, 6)
        nonce = secrets.token_hex(16)
        signature = self.key.sign(_signed_bytes(task, recipient, self.sender, sent_at, nonce, body))
        return {
            "v": AUTH_VERSION,
            "sender": self.sender,
            "recipient": recipient,
            "sent_at": sent_at,
            "nonce": nonce,
            "sig": base64.b64encode(signature).decode(),
        }


@dataclass(frozen=True)
class Verified:
    """A message whose signature checked out: who sent it, when, and its nonce."""

    sender: str
    sent_at: float
    nonce: str


def verify(
    task: str,
    recipient: str,
    body: Any,
    auth: Any,
    public_key_of: Callable[[str], Ed25519PublicKey | None],
    *,
    now: float | None = None,
    max_age: float = MAX_AGE_SECONDS,
) -> Verified:
    """Check ``auth`` for a message of ``task`` addressed to ``recipient``; raise ``Refused`` otherwise.

    ``public_key_of(sender)`` returns the key the sender is known by, or None for a sender that is not
    (or no longer) allowed to speak.
    """
    if not isinstance(auth, Mapping):
        raise Refused(UNSIGNED, "the message is not signed")
    try:
        sender = str(auth["sender"])
        sent_at = float(auth["sent_at"])
        nonce = str(auth["nonce"])
        signature = base64.b64decode(str(auth["sig"]), validate=True)
        claimed_recipient = str(auth["recipient"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Refused(BAD_SIGNATURE, f"the signature block is malformed ({exc.__class__.__name__})") from None
    if claimed_recipient != recipient:
        raise Refused(MISADDRESSED, f"the message is addressed to {claimed_recipient!r}, not to {recipient!r}")
    key = public_key_of(sender)
    if key is None:
        raise Refused(UNKNOWN_SENDER, f"{sender!r} is not an enrolled sender (unknown or revoked)")
    try:
        key.verify(signature, _signed_bytes(task, recipient, sender, sent_at, nonce, body))
    except InvalidSignature:
        raise Refused(BAD_SIGNATURE, f"the signature does not match {sender!r}'s key") from None
    current = time.time() if now is None else now
    if sent_at < current - max_age:
        raise Refused(STALE, f"the message was signed {current - sent_at:.0f}s ago, more than {max_age:.0f}s")
    if sent_at > current + MAX_CLOCK_SKEW_SECONDS:
        raise Refused(STALE, f"the message is dated {sent_at - current:.0f}s in the future")
    return Verified(sender=sender, sent_at=sent_at, nonce=nonce)


# --- credentials (what an enrolled host holds) ----------------------------------------------------------


@dataclass(frozen=True)
class HostCredentials:
    """A host's private key (or, for a process standing in for many simulated hosts, one per host) and
    the control plane's public key, as ``manage.py host_enroll`` wrote them."""

    keys: dict[str, Ed25519PrivateKey]
    control_plane: Ed25519PublicKey

    @classmethod
    def load(cls, path: Path) -> HostCredentials:
        data = json.loads(path.read_text())
        keys = {str(name): decode_private(key) for name, key in dict(data["hosts"]).items()}
        return cls(keys=keys, control_plane=decode_public(str(data["control_plane_public_key"])))

    @staticmethod
    def write(path: Path, *, keys: Mapping[str, Ed25519PrivateKey], control_plane_public_key: str) -> None:
        document = {
            "control_plane_public_key": control_plane_public_key,
            "hosts": {name: encode_private(key) for name, key in keys.items()},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as stream:
            json.dump(document, stream, indent=1)
        path.chmod(0o600)

    def signer(self, host: str) -> Signer:
        return Signer(host, self.keys[host])


# --- replay ----------------------------------------------------------------------------------------------


class NonceStore:
    """The nonces of the messages a host acted on, kept for as long as such a message would be believed.

    A message is recorded after it was handled, so a redelivery of one whose handling was cut short (the
    worker died) is still handled; a message seen again after that is a replay. SQLite in the host's
    state directory keeps them across worker restarts.
    """

    def __init__(self, path: Path, *, max_age: float = MAX_AGE_SECONDS + MAX_CLOCK_SKEW_SECONDS):
        self._max_age = max_age
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        path.chmod(0o600)
        self._db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, seen_at REAL NOT NULL)")
        self._last_prune = 0.0

    def seen(self, nonce: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM nonces WHERE nonce = ?", (nonce,)).fetchone() is not None

    def remember(self, nonce: str) -> None:
        now = time.time()
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO nonces (nonce, seen_at) VALUES (?, ?)", (nonce, now))
            if now - self._last_prune > 60:
                self._db.execute("DELETE FROM nonces WHERE seen_at < ?", (now - self._max_age,))
                self._last_prune = now

    def close(self) -> None:
        with self._lock:
            self._db.close()
