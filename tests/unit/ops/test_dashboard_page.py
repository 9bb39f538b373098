"""The dashboard page as shipped: the stable ids browser tests rely on, and nothing fetched from outside."""

from __future__ import annotations

import re
from importlib.resources import files

PAGE = (files("pyswoole.ops") / "dashboard.html").read_text(encoding="utf-8")


def test_the_current_numbers_have_stable_ids() -> None:
    for element_id in ("rps", "connections", "workers-busy", "workers-idle", "tasking", "memory", "requests"):
        assert f'id="{element_id}"' in PAGE
    assert re.search(r'<body data-updated="0">', PAGE)


def test_it_polls_stats_by_a_relative_url() -> None:
    assert 'fetch("stats"' in PAGE


def test_nothing_is_loaded_from_elsewhere() -> None:
    assert not re.search(r"<script[^>]*\bsrc=", PAGE)
    assert not re.search(r"<link[^>]*\bhref=\"(?!data:)", PAGE)
    assert "@import" not in PAGE
    assert not re.search(r"url\((?!#)", PAGE)
    # Every absolute URL in the page is an XML namespace or a comment, never something to fetch.
    assert re.findall(r"https?://[^\s\"'<>)]+", PAGE) == []
