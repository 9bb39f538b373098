"""The hot path's two builds: the modules setup.py compiles run compiled, unless PYSWOOLE_PURE_PYTHON asks for
their source (``make test`` runs the suite both ways, and this test checks each run is the one it claims)."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
import weakref
from pathlib import Path

from pyswoole.compiled import ENV, is_compiled, pure_python_asked

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import pyswoole.http.response as r, pyswoole.state._shm as s, pyswoole.compiled as c; " + (
    "print(c.is_compiled(r), c.is_compiled(s))"
)


def compiled_modules() -> list[str]:
    """The module names of setup.py's COMPILED list."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    listed = next(
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "COMPILED" for t in node.targets)
    )
    paths = ast.literal_eval(listed)
    return [path.removeprefix("src/").removesuffix(".py").replace("/", ".") for path in paths]


def test_the_compiled_list_names_modules_of_the_package() -> None:
    names = compiled_modules()
    assert "pyswoole.runtime.connection" in names
    for name in names:
        assert (ROOT / "src" / (name.replace(".", "/") + ".py")).is_file(), name


def test_each_module_of_the_list_is_its_compiled_build_unless_pure_python_is_asked() -> None:
    for name in compiled_modules():
        assert is_compiled(importlib.import_module(name)) is not pure_python_asked(), name


def test_pure_python_asked_imports_the_source_but_keeps_the_c_extensions() -> None:
    env = {**os.environ, ENV: "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]


def test_without_pure_python_the_response_module_is_compiled() -> None:
    env = {key: value for key, value in os.environ.items() if key != ENV}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]


def test_the_per_package_calls_of_the_facade_come_from_the_compiled_handles() -> None:
    from pyswoole import Server, WebSocketServer
    from pyswoole.runtime.handle import ServerHandle
    from pyswoole.websocket.handle import WebSocketHandle

    assert Server.send is ServerHandle.send
    assert WebSocketServer.push is WebSocketHandle.push
    for handle in (ServerHandle, WebSocketHandle):
        assert is_compiled(sys.modules[handle.__module__]) is not pure_python_asked()


def test_a_subclass_of_a_server_still_overrides_sets_attributes_and_is_weakly_referenced() -> None:
    from pyswoole import WebSocketServer

    class Mine(WebSocketServer):
        def send(self, fd: int, data: bytes | str, server_socket: int = -1) -> bool:
            self.sent.append((fd, data))
            return True

    server = Mine("127.0.0.1", 0)
    server.sent = []
    assert server.send(7, b"x") is True
    assert server.sent == [(7, b"x")]
    assert weakref.ref(server)() is server
    assert server.push(7, "hello") is False  # not started: push fails with its code, not by the override
    assert server.get_last_error() != 0
