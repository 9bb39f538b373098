"""The ``mode`` fixture of the HTTP integration tests: each test that takes it runs in both run modes."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["BASE", "PROCESS"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param
