"""Fixtures of the hosting tests: ``serve(app, *options)`` runs ``pyswoole serve`` (see ``hostkit.Served``) for one
test, ``serve_module`` for all the tests of a module (a framework's server is started once). The output of every
server a failed test used is attached to its report; every server is killed at teardown."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from hostkit import Served  # noqa: E402

_USED = pytest.StashKey[list]()


class Launcher:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.served: list[Served] = []

    def __call__(self, app: str, *options: str, start: bool = True, ready_path: str = "/", **kwargs) -> Served:
        served = Served(self.root / f"server{len(self.served)}", app, *options, **kwargs)
        self.served.append(served)
        return served.start(ready_path) if start else served

    def close(self) -> None:
        for served in self.served:
            served.kill()


@pytest.fixture
def serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Served]]:
    launcher = Launcher(tmp_path)
    request.node.stash[_USED] = launcher.served
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def serve_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp("served"))
    yield launcher
    launcher.close()


@pytest.fixture(autouse=True)
def _report_module_servers(request: pytest.FixtureRequest) -> None:
    if "serve_module" in request.fixturenames:
        request.node.stash[_USED] = request.getfixturevalue("serve_module").served


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        for served in item.stash.get(_USED, []):
            report.sections.append((f"server {served.app}", served.describe()))
