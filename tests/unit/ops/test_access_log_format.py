"""AccessLogFormat: gunicorn's atoms, compiled and validated at construction."""

from __future__ import annotations

import base64
import os
import time
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole.ops.access_log import DEFAULT_FORMAT, AccessLogFormat, AccessRecord

RECORD = AccessRecord(
    remote_addr="192.0.2.7",
    method="GET",
    target="/items/42?page=2&sort=asc",
    http_version="1.1",
    status=200,
    response_length=1234,
    request_headers=[
        (b"Host", b"example.test"),
        (b"User-Agent", b"curl/8.5.0"),
        (b"Referer", b"https://example.test/"),
        (b"Authorization", b"Basic " + base64.b64encode(b"alice:secret")),
    ],
    response_headers=[(b"Content-Type", b"application/json"), (b"X-Request-Id", b"abc123")],
    start_time=1_800_000_000.0,
    duration=0.0123456,
)


def render(fmt: str, record: AccessRecord = RECORD) -> str:
    return AccessLogFormat(fmt).format(record)


def test_default_format() -> None:
    assert AccessLogFormat().fmt == DEFAULT_FORMAT
    assert render(DEFAULT_FORMAT) == '192.0.2.7 "GET /items/42?page=2&sort=asc HTTP/1.1" 200 1234 12345us'


@pytest.mark.parametrize(
    ("atom", "expected"),
    [
        ("h", "192.0.2.7"),
        ("l", "-"),
        ("u", "alice"),
        ("r", "GET /items/42?page=2&sort=asc HTTP/1.1"),
        ("m", "GET"),
        ("U", "/items/42"),
        ("q", "page=2&sort=asc"),
        ("H", "HTTP/1.1"),
        ("s", "200"),
        ("B", "1234"),
        ("b", "1234"),
        ("f", "https://example.test/"),
        ("a", "curl/8.5.0"),
        ("T", "0"),
        ("D", "12345"),
        ("M", "12"),
        ("L", "0.012346"),
        ("p", "<pid>"),
        ("{x-request-id}o", "abc123"),
        ("{HOST}i", "example.test"),
        ("{content-type}o", "application/json"),
        ("{missing}i", "-"),
    ],
)
def test_each_atom(atom: str, expected: str) -> None:
    assert render(f"%({atom})s") == expected.replace("<pid>", f"<{os.getpid()}>")


def test_date_in_common_log_format() -> None:
    local = time.localtime(RECORD.start_time)
    offset = local.tm_gmtoff // 60
    zone = f"{'-' if offset < 0 else '+'}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"
    assert render("%(t)s") == time.strftime(f"[%d/%b/%Y:%H:%M:%S {zone}]", local)


def test_empty_body_is_a_dash_for_b_and_zero_for_capital_b() -> None:
    record = replace(RECORD, response_length=0)
    assert render("%(b)s %(B)s", record) == "- 0"


def test_no_user_without_basic_auth() -> None:
    record = replace(RECORD, request_headers=[(b"authorization", b"Bearer token")])
    assert render("%(u)s", record) == "-"


def test_literal_text_and_percent_signs_are_kept() -> None:
    assert render("100%% [%(s)s] done") == "100% [200] done"


def test_client_text_cannot_forge_a_line() -> None:
    record = replace(RECORD, target='/a"b\\c\n200 fake', request_headers=[(b"user-agent", b"x\r\ny\x1b[31m")])
    line = render('"%(r)s" "%(a)s"', record)
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert line == '"GET /a\\"b\\\\c\\x0a200 fake HTTP/1.1" "x\\x0d\\x0ay\\x1b[31m"'


@pytest.mark.parametrize("fmt", ["%(zz)s", "%({user-agent}x)s", "%(h)d", "%(h)", "50% done", "%(h"])
def test_a_bad_format_names_the_setting(fmt: str) -> None:
    with pytest.raises(ValueError, match="http_access_log_format"):
        AccessLogFormat(fmt)


@given(st.text(), st.binary())
def test_any_target_and_header_give_one_line(target: str, agent: bytes) -> None:
    record = replace(RECORD, target=target, request_headers=[(b"user-agent", agent)])
    line = render(DEFAULT_FORMAT + ' "%(a)s"', record)
    assert len(line.splitlines()) == 1


def test_unicode_line_separators_are_escaped() -> None:
    assert render("%(U)s", replace(RECORD, target="/a\u2028b\u2029c")) == "/a\\u2028b\\u2029c"
