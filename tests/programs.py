"""System programs that some tests drive (curl, wrk, chromium, redis-server, haproxy, tmux, openssl).

``.ci/run`` installs them from Debian's packages. With ``CI=true`` a missing program fails the test, so CI can never
go green by skipping; on a developer's machine the test is skipped, saying which package to install.
"""

from __future__ import annotations

import os
import shutil

import pytest

# program -> the Debian package that brings it
PACKAGES = {
    "curl": "curl",
    "wrk": "wrk",
    "chromium": "chromium",
    "chromedriver": "chromium-driver",
    "redis-server": "redis-server",
    "haproxy": "haproxy",
    "tmux": "tmux",
    "openssl": "openssl",
    "ss": "iproute2",
}


def need(program: str) -> str:
    """The path of ``program``; skips the test when it is missing (fails under ``CI=true``)."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        message = f"{program} is not installed (Debian: apt-get install {PACKAGES.get(program, program)})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + "; .ci/run installs it")
        pytest.skip(message)
    return path
