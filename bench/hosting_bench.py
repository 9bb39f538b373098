"""Hosting benchmark (issue 13): ``pyswoole serve`` running an ASGI and a WSGI app, against uvicorn, granian
and gunicorn.

The same plain-text hello app (``servers/apps.py``) behind every server, one worker each, driven by
``wrk -t1 -c50 --latency``; the rows run one after another within each repetition, in an order that flips
every repetition, and each is divided by ``uvicorn 1 worker`` of the same repetition, except pyswoole's WSGI row,
divided by ``gunicorn sync 1 worker`` (its target). The pyswoole rows use the contract's command line,
``pyswoole serve MODULE:APP``. The runs, the probe and the wrk parsing are ``wrkload.py``'s.

Exit status: 0 when every run completed with no socket error and no non-2xx answer; 1 when a server failed
to start or died, wrk failed, or any run had errors; 2 when wrk is missing; 130 on Ctrl-C. A missed target
is printed but does not change the exit status.
"""

from __future__ import annotations

import sys

import harness
from wrkload import APPS, HOST_PORT, UVICORN_ASGI, HttpRow, main

GRANIAN = ("-m", "granian", "--workers", "1", "--no-access-log", "--log-level", "warning", *HOST_PORT)
WSGI_APP = f"{APPS}:wsgi_app"
PYSWOOLE = ("-m", "pyswoole", "serve", "--workers", "1", "--mode", "base", "--no-access-log", *HOST_PORT)

CONFIGS: tuple[HttpRow, ...] = (
    HttpRow(
        "uvicorn 1 worker",
        UVICORN_ASGI,
    ),
    HttpRow(
        "granian ASGI 1 worker",
        (*GRANIAN, "--interface", "asgi", "--loop", "uvloop", f"{APPS}:asgi_app"),
        baseline="uvicorn 1 worker",
    ),
    HttpRow(
        "granian WSGI 1 worker",
        (*GRANIAN, "--interface", "wsgi", f"{APPS}:wsgi_app"),
        baseline="uvicorn 1 worker",
    ),
    HttpRow(
        "gunicorn sync 1 worker",
        ("-m", "gunicorn", "--worker-class", "sync", "--workers", "1", "--bind", "127.0.0.1:{port}", WSGI_APP),
        baseline="uvicorn 1 worker",
    ),
    HttpRow(
        "pyswoole ASGI BASE 1 worker",
        (*PYSWOOLE, "--interface", "asgi", f"{APPS}:asgi_app"),
        baseline="uvicorn 1 worker",
        target=1.5,
    ),
    HttpRow(
        "pyswoole WSGI BASE 1 worker",
        (*PYSWOOLE, "--interface", "wsgi", f"{APPS}:wsgi_app"),
        baseline="gunicorn sync 1 worker",
        target=1.5,
    ),
)

TARGETS = (harness.Target("pyswoole ASGI BASE 1 worker", "granian ASGI 1 worker", 1.0),)

harness.check_configs(CONFIGS)
harness.check_targets(CONFIGS, TARGETS)


if __name__ == "__main__":
    sys.exit(main("hosting_bench", __doc__, CONFIGS, TARGETS, None, repeat=5, duration=5))
