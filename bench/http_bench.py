"""HTTP hello-world benchmark (issue 11): pyswoole's HttpServer against granian, uvicorn and a raw uvloop ceiling.

Every row answers ``GET /`` with ``200 hello`` (keep-alive) and is driven by ``wrk -t1 -c50 --latency``; the
rows run one after another within each repetition, in an order that flips every repetition, and each is
divided by ``uvloop raw`` (the ceiling: an ``asyncio.Protocol`` writing fixed bytes) of the same repetition.
The targets compare pyswoole with the peers the issue names, from the same paired runs. The runs, the probe
and the wrk parsing are ``wrkload.py``'s; the schedule, medians and table ``harness.py``'s.

Exit status: 0 when every run completed with no socket error and no non-2xx answer; 1 when a server failed
to start or died, wrk failed, or any run had errors; 2 when wrk is missing; 130 on Ctrl-C. A missed target
is printed but does not change the exit status.
"""

from __future__ import annotations

import sys

import harness
from wrkload import APPS, HOST_PORT, UVICORN_ASGI, HttpRow, main

GRANIAN = ("-m", "granian", "--workers", "1", "--loop", "uvloop", "--no-access-log", "--log-level", "warning")
PYSWOOLE = "bench/servers/pyswoole_http.py"

CONFIGS: tuple[HttpRow, ...] = (
    HttpRow("uvloop raw", ("bench/servers/uvloop_http.py", "--port", "{port}")),
    HttpRow(
        "granian RSGI 1 worker",
        (*GRANIAN, "--interface", "rsgi", *HOST_PORT, f"{APPS}:rsgi_app"),
        baseline="uvloop raw",
    ),
    HttpRow(
        "granian ASGI 1 worker",
        (*GRANIAN, "--interface", "asgi", *HOST_PORT, f"{APPS}:asgi_app"),
        baseline="uvloop raw",
    ),
    HttpRow(
        "uvicorn 1 worker",
        UVICORN_ASGI,
        baseline="uvloop raw",
    ),
    HttpRow(
        "pyswoole BASE 1 worker",
        (PYSWOOLE, "--port", "{port}", "--mode", "base", "--workers", "1"),
        baseline="uvloop raw",
    ),
    HttpRow(
        "pyswoole PROCESS 1/1",
        (PYSWOOLE, "--port", "{port}", "--mode", "process", "--workers", "1", "--reactors", "1"),
        baseline="pyswoole BASE 1 worker",
        target=0.5,
    ),
)

TARGETS = (
    harness.Target("pyswoole BASE 1 worker", "granian RSGI 1 worker", 1.0),
    harness.Target("pyswoole BASE 1 worker", "uvicorn 1 worker", 1.5),
)

harness.check_configs(CONFIGS)
harness.check_targets(CONFIGS, TARGETS)


if __name__ == "__main__":
    sys.exit(main("http_bench", __doc__, CONFIGS, TARGETS, None, repeat=5, duration=5))
