"""The hot path's two builds: compiled by mypyc (the default, see setup.py), or the same source interpreted.

``PYSWOOLE_PURE_PYTHON=1`` in the environment, at build time, skips the compilation; at run time it makes every
process of the server import the ``.py`` beside each compiled module instead of the module built from it. The test
suite runs both ways (``make test``); a developer editing a compiled module sets it to see the edit without a
rebuild. Invariant: the variable changes which file is imported, never what the code does.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

ENV = "PYSWOOLE_PURE_PYTHON"


def pure_python_asked() -> bool:
    return os.environ.get(ENV, "") not in ("", "0")


def unchecked(obj: object) -> Any:
    """``obj`` with its methods' results unchecked. A compiled module checks what a call returns against the
    declared type, and uvloop's ``remove_reader``/``remove_writer`` return None where typeshed says bool."""
    return obj


def is_compiled(module: ModuleType) -> bool:
    """Whether ``module`` was imported from an extension module (for pyswoole's own: built by mypyc)."""
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds pyswoole's modules as the path finder does, but a compiled one with its source beside it is
    imported from that source. C extensions proper (no ``.py`` beside them) are left as they are."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not fullname.startswith("pyswoole."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            return None
        source = Path(spec.origin).with_name(fullname.rpartition(".")[2] + ".py")
        return importlib.util.spec_from_file_location(fullname, source) if source.is_file() else None


# Imported by the package before anything else of itself, so this comes before any compiled module is found.
if pure_python_asked():
    sys.meta_path.insert(0, _SourceFirst())
