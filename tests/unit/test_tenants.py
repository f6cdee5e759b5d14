"""The keys file: its lines, their mistakes (named by line), and key lookup."""

from __future__ import annotations

import pytest

from common.tenants import Tenant, find_tenant, key_digest, new_key_line, parse_keys


def test_a_new_key_line_holds_the_keys_hash_and_finds_its_tenant() -> None:
    key, line = new_key_line("alice")
    assert key not in line and line == f"alice:{key_digest(key).hex()}"
    _, other = new_key_line("bob")
    entries = parse_keys(f"# comment\n\n{line}\n{other}:7\n")
    assert find_tenant(entries, key.encode()) == Tenant("alice")
    assert find_tenant(entries, b"not-a-key") is None
    assert find_tenant(entries, line.encode()) is None  # the line is not the key
    assert entries[1].tenant == Tenant("bob", 7)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ("alice", "expected TENANT:SHA256-HEX"),
        ("alice:abc", "64 hex digits"),
        (f"al ice:{'0' * 64}", "tenant name"),
        (f":{'0' * 64}", "tenant name"),
        (f"alice:{'0' * 64}:0", "not a positive integer"),
        (f"alice:{'0' * 64}:x", "not a positive integer"),
        (f"alice:{'0' * 64}:1:2", "expected TENANT:SHA256-HEX"),
    ],
)
def test_a_bad_line_is_refused_naming_its_line(line: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as raised:
        parse_keys(f"# first\n{line}\n", source="keys")
    assert str(raised.value).startswith("keys line 2: ")


def test_a_tenant_name_must_be_usable_in_keys_and_bindings() -> None:
    with pytest.raises(ValueError, match="tenant name"):
        new_key_line("a:b")
