"""check_admin_address: the admin_server setting, validated before anything binds."""

from __future__ import annotations

import pytest

from pyswoole.ops.admin import check_admin_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9502", ("127.0.0.1", 9502)),
        ("127.1.2.3:0", ("127.1.2.3", 0)),
        ("localhost:9502", ("localhost", 9502)),
        ("[::1]:9502", ("::1", 9502)),
        ("[::ffff:127.0.0.1]:65535", ("::ffff:127.0.0.1", 65535)),
    ],
)
def test_loopback_addresses_need_no_token(address: str, expected: tuple[str, int]) -> None:
    assert check_admin_address(address, None) == expected


@pytest.mark.parametrize("address", ["0.0.0.0:9502", "192.0.2.1:9502", "[::]:9502", "admin.example:9502"])
def test_other_addresses_need_a_token(address: str) -> None:
    with pytest.raises(ValueError, match="admin_server.*admin_server_token"):
        check_admin_address(address, None)
    assert check_admin_address(address, "t0ken")[1] == 9502


@pytest.mark.parametrize(
    "address",
    ["", "9502", ":9502", "127.0.0.1", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:65536", "127.0.0.1:-1",
     "::1:9502", "[::1:9502", "[localhost]:9502", "[127.0.0.1]:9502", "127.0.0.1:９５０２"],
)  # fmt: skip
def test_malformed_addresses_name_the_setting(address: str) -> None:
    with pytest.raises(ValueError, match="^admin_server: "):
        check_admin_address(address, "t0ken")


def test_a_non_string_address_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="admin_server"):
        check_admin_address(9502, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "with space", "tab\there", "naïve"])
def test_a_token_that_no_header_can_carry_is_refused(token: str) -> None:
    with pytest.raises(ValueError, match="admin_server_token"):
        check_admin_address("127.0.0.1:9502", token)
