"""Tenants and their API keys, as the gateway's keys file holds them.

One line per key: ``TENANT:SHA256-HEX-OF-KEY`` or ``TENANT:SHA256-HEX:MAX_UNFINISHED``
(a per-tenant quota of queued + running tasks). Blank lines and ``#`` comments are
skipped. Only the hash of a key is ever stored; `new_key_line` makes a key and its line.
A tenant may have several lines (several keys, e.g. while rotating one)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TENANT = "default"
"""The tenant of every call when no keys are configured, and of the single `api_key`."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    max_unfinished: int | None = None
    """Most queued + running tasks at once; None: the gateway's default."""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    tenant: Tenant
    digest: bytes  # SHA-256 of the key


def check_tenant_name(name: str) -> str:
    """`name` if it can name a tenant (it ends up in Redis keys and slot bindings)."""
    if not _NAME.match(name):
        raise ValueError(
            f"tenant name {name!r}: 1-63 letters, digits, '_', '.' or '-', starting with"
            " a letter or digit"
        )
    return name


def key_digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode() if isinstance(key, str) else key).digest()


def parse_key_line(line: str) -> KeyEntry:
    """One line of a keys file; ValueError saying what is wrong."""
    parts = line.strip().split(":")
    if len(parts) not in (2, 3):
        raise ValueError("expected TENANT:SHA256-HEX or TENANT:SHA256-HEX:MAX_UNFINISHED")
    name, digest = check_tenant_name(parts[0]), parts[1].lower()
    if not _HASH.match(digest):
        raise ValueError("the key hash must be 64 hex digits (SHA-256 of the key)")
    quota = None
    if len(parts) == 3:
        if not parts[2].isdigit() or int(parts[2]) < 1:
            raise ValueError(f"max unfinished tasks {parts[2]!r} is not a positive integer")
        quota = int(parts[2])
    return KeyEntry(Tenant(name, quota), bytes.fromhex(digest))


def parse_keys(text: str, *, source: str = "keys file") -> list[KeyEntry]:
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entries.append(parse_key_line(line))
        except ValueError as exc:
            raise ValueError(f"{source} line {number}: {exc}") from None
    return entries


def load_keys(path: Path) -> list[KeyEntry]:
    return parse_keys(path.read_text(), source=str(path))


def find_tenant(entries: list[KeyEntry], key: bytes) -> Tenant | None:
    """The tenant whose key this is. Every entry is compared, in constant time, so
    the answer's timing tells nothing about which (or whether one) matched."""
    digest = key_digest(key)
    found = None
    for entry in entries:
        if hmac.compare_digest(entry.digest, digest) and found is None:
            found = entry.tenant
    return found


def new_key_line(tenant: str) -> tuple[str, str]:
    """A fresh random key and the keys-file line that grants it to `tenant`."""
    key = secrets.token_urlsafe(32)
    return key, f"{check_tenant_name(tenant)}:{key_digest(key).hex()}"
