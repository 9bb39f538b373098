"""A hosted application's responses are recorded as a Request callback's are: one access-log line each, and the
count by status class in the published snapshot (what ``pyswoole status`` and ``/metrics`` show)."""

from __future__ import annotations

import re

import pytest
from hostkit import http_client

from httpkit import http_counts
from serverkit import wait_until

# path -> the status both probe applications answer it with
ASKED = {"/": 200, "/stream": 200, "/nope": 404, "/raise-before": 500}


@pytest.mark.parametrize("mode", ["base", "process"])
@pytest.mark.parametrize("app", ["asgi_probe:app", "wsgi_probe:app"])
def test_hosted_responses_are_logged_and_counted_by_status_class(serve, tmp_path, app, mode):
    log_file = tmp_path / "server.log"
    served = serve(app, "--mode", mode, "--workers", "1", "--log-file", str(log_file),
                   "--set", "stats_timer_interval=100",
                   "--set", 'http_access_log_format=%(h)s "%(r)s" %(s)s %(b)s %({content-type}o)s')  # fmt: skip
    with http_client(base_url=served.url) as client:
        for path, status in ASKED.items():
            assert client.get(path).status_code == status, path

    def lines() -> list[str]:
        return re.findall(r'127\.0\.0\.1 "GET [^"]*" \d+ \S+ \S+', log_file.read_text())

    # the readiness probe's GET / is logged too
    wait_until(lambda: len(lines()) == len(ASKED) + 1, message=lambda: log_file.read_text())
    logged = lines()[1:]
    assert logged[0] == '127.0.0.1 "GET / HTTP/1.1" 200 5 text/plain'
    assert logged[1].startswith('127.0.0.1 "GET /stream HTTP/1.1" 200 ') and logged[1].endswith(" text/plain")
    assert logged[2] == '127.0.0.1 "GET /nope HTTP/1.1" 404 9 text/plain'
    assert logged[3] == '127.0.0.1 "GET /raise-before HTTP/1.1" 500 21 -'

    wait_until(lambda: http_counts(served.pid_file) == {"1xx": 0, "2xx": 3, "3xx": 0, "4xx": 1, "5xx": 1},
               message=lambda: f"counts: {http_counts(served.pid_file)}")  # fmt: skip
