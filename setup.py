"""The compiled parts of pyswoole; everything else about the package is in pyproject.toml.

Two kinds: small C extensions (shared memory, WebSocket masking), and the hot path, the same typed modules compiled
with mypyc (see COMPILED). ``PYSWOOLE_PURE_PYTHON=1`` at build time leaves the hot path interpreted: the same
source runs either way, and the test suite runs both ways (``make test``).
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

EXTENSIONS: list[Extension] = [
    Extension("pyswoole.state._shm", ["src/pyswoole/state/_shm.c"], extra_compile_args=["-O2", "-Wall", "-Wextra"]),
    Extension("pyswoole.websocket._mask", ["src/pyswoole/websocket/_mask.c"]),
]

# The modules on the path from the socket to the user's callback and back (the profile in NOTES.md names them).
COMPILED = [
    "src/pyswoole/protocol/framing.py",
    "src/pyswoole/runtime/callbacks.py",
    "src/pyswoole/runtime/connection.py",
    "src/pyswoole/runtime/context.py",
    "src/pyswoole/runtime/dispatch.py",
    "src/pyswoole/runtime/factory.py",
    "src/pyswoole/runtime/handle.py",
    "src/pyswoole/runtime/held_output.py",
    "src/pyswoole/runtime/reactor.py",
    "src/pyswoole/runtime/stats.py",
    "src/pyswoole/runtime/worker.py",
    "src/pyswoole/ipc/codec.py",
    "src/pyswoole/ipc/pipes.py",
    "src/pyswoole/ipc/shm.py",
    "src/pyswoole/http/answers.py",
    "src/pyswoole/http/base_connection.py",
    "src/pyswoole/http/conversation.py",
    "src/pyswoole/http/headers.py",
    "src/pyswoole/http/parser.py",
    "src/pyswoole/http/reactor_connection.py",
    "src/pyswoole/http/response.py",
    "src/pyswoole/http/service.py",
    "src/pyswoole/http/sink.py",
    "src/pyswoole/hosting/asgi.py",
    "src/pyswoole/hosting/loader.py",
    "src/pyswoole/hosting/proxy.py",
    "src/pyswoole/hosting/wsgi.py",
    "src/pyswoole/websocket/frames.py",
    "src/pyswoole/websocket/handle.py",
    "src/pyswoole/websocket/parser.py",
    "src/pyswoole/websocket/session.py",
    "src/pyswoole/websocket/service.py",
]


def compiled() -> list[Extension]:
    if os.environ.get("PYSWOOLE_PURE_PYTHON", "") not in ("", "0"):
        return []
    from mypyc.build import mypycify

    # pip builds in an isolated environment without the runtime dependencies (uvloop, redis...): mypyc reads
    # their modules as Any there, and the strict checks that only make sense with their stubs are off.
    relaxed = ["--ignore-missing-imports", "--no-warn-unused-ignores", "--no-warn-return-any"]
    return mypycify([*relaxed, *COMPILED], opt_level="3", debug_level="0")


setup(ext_modules=EXTENSIONS + compiled())
